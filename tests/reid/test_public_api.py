"""The trainer's public face: the names its packages export, pinned here, each one documented.

A package's ``__all__`` is what a user of the trainer's Python API imports from it; everything else is
imported from the module that defines it. Adding a name to a package's ``__all__`` means adding it here
and to the ``exports`` line at the top of the package's API page, which links each name to its
documentation (``mkdocs build --strict`` fails on a link to an object no page renders).
"""

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "examples" / "stadb_reid"
API_PAGES = ROOT / "docs" / "api" / "stadb_reid"
MAX_PUBLIC_NAMES = 80

EVALUATION = (
    "RankMetrics",
    "evaluate_from_features",
    "evaluate_rank",
    "extract_features",
    "k_reciprocal_rerank_features",
    "pairwise_distance",
    "rank_metrics",
)
#: Each package's ``__all__``, and the API page whose ``exports`` line lists it.
PUBLIC = {
    "stadb_reid": ("evaluation.md", EVALUATION),
    "stadb_reid.cli": ("cli.md", ("app", "main")),
    "stadb_reid.commands": (
        "commands.md",
        (
            "ExportFormat",
            "describe_config",
            "evaluate_checkpoint",
            "export_checkpoint",
            "extract_folder",
            "index_gallery",
            "run_demo",
            "search_gallery",
            "visualize_checkpoint",
        ),
    ),
    "stadb_reid.commands.sweep": ("commands.md", ("load_grid", "sweep", "sweep_status")),
    "stadb_reid.config": (
        "config.md",
        (
            "Config",
            "Overrides",
            "Variant",
            "available_recipes",
            "bundled_configs",
            "config_to_dict",
            "load_config",
        ),
    ),
    "stadb_reid.data": (
        "data.md",
        (
            "PKSampler",
            "ReIDDataset",
            "ReIDSample",
            "available_datasets",
            "build_dataset",
            "build_test_loaders",
            "build_test_transform",
            "build_train_loader",
            "build_train_transform",
            "dataset_from_config",
            "generate_synthetic_reid",
            "register_dataset",
        ),
    ),
    "stadb_reid.data.datasets": (
        "data.md",
        (
            "ReIDDataset",
            "ReIDSample",
            "available_datasets",
            "build_dataset",
            "dataset_from_config",
            "register_dataset",
        ),
    ),
    "stadb_reid.data.synthetic": ("data.md", ("generate_synthetic_reid", "render_person")),
    "stadb_reid.engine": (
        "engine.md",
        ("HookBase", "TrainLoop", "TrainState", "Trainer", "build_model", "load_checkpoint", "train"),
    ),
    "stadb_reid.evaluation": ("evaluation.md", EVALUATION),
    "stadb_reid.inference": (
        "inference.md",
        ("ImageInput", "Precision", "ReIDExtractor", "keep_freed_memory"),
    ),
    "stadb_reid.model": ("model.md", ("STADBNet", "TrainOutput")),
    "stadb_reid.model.folder": (
        "model.md",
        (
            "ModelFolderConfig",
            "load_model_folder",
            "model_folder_config",
            "read_model_config",
            "save_model_folder",
            "save_trained_model",
        ),
    ),
    "stadb_reid.search": (
        "search.md",
        (
            "GalleryIndex",
            "Match",
            "QueryResult",
            "Shards",
            "build_index",
            "format_results",
            "render_page",
            "search_index",
            "search_shards",
        ),
    ),
    "stadb_reid.visualization": (
        "visualization.md",
        (
            "compute_attention_maps",
            "plot_attention",
            "plot_cmc",
            "plot_retrieval",
            "plot_training_curves",
            "top_matches",
        ),
    ),
}
_EXPORTS_RE = re.compile(r"^`(?P<package>stadb_reid[\w.]*)` exports\s(?P<links>.+?)(?:\n\n|\Z)", re.M | re.S)
_LINK_RE = re.compile(r"\[`(?P<name>\w+)`\]\[(?P<target>[\w.]+)\]")
_DIRECTIVE_RE = re.compile(r"^::: (?P<module>[\w.]+)\n(?P<options>(?:[ \t]+\S.*\n)*)", re.M)


def _packages() -> list[str]:
    return sorted(
        ".".join(("stadb_reid", *path.parent.relative_to(PACKAGE).parts))
        for path in PACKAGE.rglob("__init__.py")
    )


def _package_all(package: str) -> list[str]:
    path = PACKAGE.joinpath(*package.split(".")[1:], "__init__.py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def _exports_lines() -> dict[str, tuple[str, dict[str, str]]]:
    """Package -> (page, {name: link target}) from the ``exports`` lines of the API pages."""
    found = {}
    for page in sorted(API_PAGES.glob("*.md")):
        for match in _EXPORTS_RE.finditer(page.read_text(encoding="utf-8")):
            links = {link["name"]: link["target"] for link in _LINK_RE.finditer(match["links"])}
            found[match["package"]] = (page.name, links)
    return found


def _rendered_members() -> dict[str, list[str] | None]:
    """Module -> the members its ``:::`` directive renders (``None``: its public names, all of them)."""
    rendered: dict[str, list[str] | None] = {}
    for page in sorted(API_PAGES.glob("*.md")):
        for match in _DIRECTIVE_RE.finditer(page.read_text(encoding="utf-8")):
            members = re.search(r"^\s+members:\s*(.+)$", match["options"], re.M)
            if members is None:
                rendered[match["module"]] = None
            elif members[1].strip() != "false":
                rendered[match["module"]] = re.findall(r"\w+", members[1])
    return rendered


def test_the_public_names_are_pinned() -> None:
    """Every package's ``__all__`` is the list above: a new public name is a visible decision."""
    assert {package: tuple(_package_all(package)) for package in _packages()} == {
        package: names for package, (_, names) in PUBLIC.items()
    }


def test_at_most_80_public_names() -> None:
    distinct = {name for _, names in PUBLIC.values() for name in names}
    assert len(distinct) <= MAX_PUBLIC_NAMES, sorted(distinct)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_public_name_is_importable_from_its_package(package: str) -> None:
    module = importlib.import_module(package)
    for name in PUBLIC[package][1]:
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_the_api_page_lists_exactly_the_public_names(package: str) -> None:
    """The ``exports`` line of the package's page names its ``__all__``, no more and no less."""
    page, names = PUBLIC[package]
    found_page, links = _exports_lines().get(package, ("", {}))
    assert found_page == page, f"docs/api/stadb_reid/{page} lacks the line '`{package}` exports ...'"
    assert sorted(links) == sorted(names)


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_each_public_name_links_to_its_documentation(package: str) -> None:
    """Each link of the ``exports`` line is the object itself, on a module a ``:::`` directive renders."""
    rendered = _rendered_members()
    exported = importlib.import_module(package)
    for name, target in _exports_lines()[package][1].items():
        module_name, _, member = target.rpartition(".")
        assert member == name, target
        module = importlib.import_module(module_name)
        assert getattr(module, member) is getattr(exported, name), f"{target} is not {package}.{name}"
        assert module_name in rendered, f"no '::: {module_name}' directive renders {target}"
        shown = rendered[module_name]
        if shown is None:
            public = getattr(module, "__all__", None)
            assert public is None or member in public, f"{module_name}.__all__ leaves out {member}"
        else:
            assert member in shown, f"the '::: {module_name}' directive's members leave out {member}"


def test_the_checks_read_a_page() -> None:
    text = (
        "Intro.\n\n`stadb_reid.x` exports [`A`][stadb_reid.x.a.A],\n[`f`][stadb_reid.x.b.f].\n\n"
        "::: stadb_reid.x.a\n\n::: stadb_reid.x\n    options:\n      members: [f, g]\n"
    )
    exports = _EXPORTS_RE.search(text)
    assert exports is not None and exports["package"] == "stadb_reid.x"
    assert {m["name"]: m["target"] for m in _LINK_RE.finditer(exports["links"])} == {
        "A": "stadb_reid.x.a.A",
        "f": "stadb_reid.x.b.f",
    }
    directives = {m["module"]: m["options"] for m in _DIRECTIVE_RE.finditer(text)}
    assert directives == {"stadb_reid.x.a": "", "stadb_reid.x": "    options:\n      members: [f, g]\n"}
