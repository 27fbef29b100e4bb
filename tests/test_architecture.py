"""The import contract: the packages form layers that import only downwards, no modules import in a cycle,
and no module imports an underscore name from another package.

``stadb_reid``, bottom to top (see docs/contributing.md)::

    errors, config  ->  data | model  ->  evaluation  ->  visualization  ->  engine  ->  commands  ->  cli

A module may import from its own subpackage and from any layer below its own; ``data`` and ``model``
share a layer and do not import each other. ``stadb_layers`` imports nothing of ``stadb_reid``. Every
import counts, also one inside a function (a deferred import still couples the modules); only imports
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"stadb_layers": ROOT / "stadb_layers", "stadb_reid": ROOT / "examples" / "stadb_reid"}
#: Layer of each part of stadb_reid (its subpackage or top-level module); a higher one may import a lower one.
LAYERS = {
    "errors": 0,
    "printable": 0,
    "config": 1,
    "paper": 1,
    "data": 2,
    "model": 2,
    "evaluation": 3,
    "inference": 3,
    "visualization": 4,
    "search": 4,
    "engine": 5,
    "commands": 6,
    "cli": 7,
    "__main__": 9,
    "": 10,  # the package's own __init__, a facade over the rest
}


def _runs(node: ast.AST) -> bool:
    return not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))


def _imports(
    tree: ast.AST, module: str, is_package: bool, type_checking: bool
) -> set[tuple[str, str | None]]:
    """``(module, None)`` per ``import module``, ``(target, name)`` per ``from target import name``."""
    found: set[tuple[str, str | None]] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.update((target, alias.name) for alias in node.names)
        stack.extend(child for child in ast.iter_child_nodes(node) if type_checking or _runs(child))
    return found


def import_graph(packages: dict[str, Path], *, type_checking: bool = False) -> dict[str, set[str]]:
    """Each module of ``packages`` and the modules of ``packages`` it imports.

    ``from package import name`` leads to the module ``name`` of the package when there is one, else
    to the module the package's ``__init__`` imports ``name`` from (followed through nested packages),
    else to the package's ``__init__`` itself, which then defines ``name``. Imports under
    ``if TYPE_CHECKING:`` count only with ``type_checking``.
    """
    sources = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = (name, *path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            sources[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    imports = {
        module: _imports(ast.parse(path.read_text(encoding="utf-8")), module, is_package, type_checking)
        for module, (path, is_package) in sources.items()
    }
    # What each package's __init__ re-exports: name -> (module it is imported from, name there).
    exports = {
        module: {name: (target, name) for target, name in imports[module] if name is not None}
        for module, (_, is_package) in sources.items()
        if is_package
    }

    def resolve(target: str, name: str | None, seen: frozenset[str] = frozenset()) -> set[str]:
        if name is not None and f"{target}.{name}" in sources:
            return {f"{target}.{name}"}
        if name is not None and name in exports.get(target, {}) and target not in seen:
            return resolve(*exports[target][name], seen | {target})
        return {target} if target in sources else set()

    return {
        module: {found for target, name in imported for found in resolve(target, name)} - {module}
        for module, imported in imports.items()
    }


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """``"a -> b"`` for every import of stadb_reid that goes up, sideways, or from the library into it."""
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if module.startswith("stadb_layers") and target.startswith("stadb_reid"):
                problems.append(f"{module} -> {target} (the library imports the trainer)")
            elif module.startswith("stadb_reid") and target.startswith("stadb_reid"):
                source, destination = _part(module), _part(target)
                if source != destination and layers[destination] >= layers[source]:
                    problems.append(f"{module} -> {target} ({source} may not import {destination})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles between modules (a package's ``__init__`` is a module too)."""
    found, state = [], dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state[target] == 1:
                found.append([*path[path.index(target) :], target])
            elif state[target] == 0:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if state[module] == 0:
            visit(module, [module])
    return found


def test_every_part_of_the_trainer_has_a_layer() -> None:
    parts = {_part(module) for module in import_graph(PACKAGES) if module.startswith("stadb_reid")}
    assert parts <= set(LAYERS), f"add to LAYERS (and docs/contributing.md): {sorted(parts - set(LAYERS))}"


def test_imports_go_down_the_layers_only() -> None:
    assert layer_violations(import_graph(PACKAGES), LAYERS) == []


def test_no_module_imports_in_a_cycle() -> None:
    assert cycles(import_graph(PACKAGES)) == []


def test_no_cycle_hides_under_type_checking() -> None:
    """A cycle only ``if TYPE_CHECKING:`` keeps from running is still two modules needing each other."""
    assert cycles(import_graph(PACKAGES, type_checking=True)) == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports_across_packages(packages: dict[str, Path]) -> list[str]:
    """``"module -> package.module:name"`` for every underscore module or name imported from another package.

    A package is one folder (``stadb_reid.engine`` and ``stadb_reid.engine.sweep`` are two); imports under
    ``if TYPE_CHECKING:`` count too.
    """
    problems = []
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = (name, *path.relative_to(folder).with_suffix("").parts)
            home = ".".join(parts[:-1])
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom):
                    base = parts[: len(parts) - node.level] if node.level else ()
                    target = ".".join([*base, node.module] if node.module else base)
                    imported = [(target, alias.name) for alias in node.names]
                elif isinstance(node, ast.Import):
                    split = [alias.name.rpartition(".") for alias in node.names if "." in alias.name]
                    imported = [(module, member) for module, _, member in split]
                else:
                    continue
                for module, member in imported:
                    if module.split(".")[0] not in packages:
                        continue
                    is_folder = (packages[module.split(".")[0]].joinpath(*module.split(".")[1:])).is_dir()
                    source = module if is_folder else module.rpartition(".")[0]
                    if source != home and any(_private(part) for part in [*module.split("."), member]):
                        problems.append(f"{'.'.join(parts)} -> {module}:{member}")
    return problems


def test_no_underscore_name_is_imported_from_another_package() -> None:
    assert private_imports_across_packages(PACKAGES) == []


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    """A small stadb_reid whose data imports the engine, and whose engine modules import each other.

    Its model imports its folder through the folder package, and the folder imports the model back
    under ``if TYPE_CHECKING:`` only.
    """
    root = tmp_path / "stadb_reid"
    for folder in ("data", "engine", "model", "model/folder"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "data" / "loaders.py").write_text(
        "from ._sizes import SIZE\ndef f():\n    from ..engine.trainer import train, _helper\n"
    )
    (root / "engine" / "trainer.py").write_text("from . import evaluate\n")
    (root / "engine" / "evaluate.py").write_text("from .trainer import train\n")
    (root / "engine" / "hints.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .trainer import train\n"
    )
    (root / "model" / "stadb.py").write_text("from .folder import load\n")
    (root / "model" / "folder" / "__init__.py").write_text("from .files import load\n")
    (root / "model" / "folder" / "files.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..stadb import Net\ndef load(): ...\n"
    )
    return root


def test_the_checks_catch_an_upward_import_and_a_cycle(fake_tree: Path) -> None:
    graph = import_graph({"stadb_reid": fake_tree})
    assert layer_violations(graph, LAYERS) == [
        "stadb_reid.data.loaders -> stadb_reid.engine.trainer (data may not import engine)"
    ]
    assert [sorted(set(cycle)) for cycle in cycles(graph)] == [
        ["stadb_reid.engine.evaluate", "stadb_reid.engine.trainer"]
    ]
    assert "stadb_reid.engine.trainer" not in graph["stadb_reid.engine.hints"]
    assert graph["stadb_reid.model.stadb"] == {"stadb_reid.model.folder.files"}  # through the package
    with_hints = import_graph({"stadb_reid": fake_tree}, type_checking=True)
    assert {frozenset(cycle) for cycle in cycles(with_hints)} == {
        frozenset({"stadb_reid.engine.evaluate", "stadb_reid.engine.trainer"}),
        frozenset({"stadb_reid.model.stadb", "stadb_reid.model.folder.files"}),
    }
    assert private_imports_across_packages({"stadb_reid": fake_tree}) == [
        "stadb_reid.data.loaders -> stadb_reid.engine.trainer:_helper"
    ]
