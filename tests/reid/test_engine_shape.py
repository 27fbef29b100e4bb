"""The engine's shape: short functions, hooks that only read the loop, the run folder's files named once."""

import ast
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stadb_reid.engine import hooks as hooks_module
from stadb_reid.engine import run_folder
from stadb_reid.engine.loop import HookBase, TrainLoop
from stadb_reid.engine.state import ResumePosition

PACKAGE = Path(run_folder.__file__).resolve().parents[1]
ENGINE = PACKAGE / "engine"
MAX_FUNCTION_LINES = 60
#: The points of a run, in the order HookBase documents.
POINTS = ("before_train", "before_epoch", "before_step", "after_step", "epoch_metrics", "after_epoch")


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``name (N lines)`` of every function in ``source`` longer than ``limit``, decorators included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > limit:
                found.append(f"{node.name} ({lines} lines)")
    return found


def _is_loop(node: ast.expr, aliases: set[str]) -> bool:
    """Whether ``node`` is the hook's view of the loop: ``self.trainer`` or a name bound to it."""
    if isinstance(node, ast.Name):
        return node.id in aliases
    return isinstance(node, ast.Attribute) and node.attr == "trainer" and isinstance(node.value, ast.Name)


def _reaches_loop(node: ast.expr, aliases: set[str]) -> bool:
    """Whether ``node`` is the loop or something reached from it (``loop.history[-1]``, ``loop.x.y``)."""
    while True:
        if _is_loop(node, aliases):
            return True
        if not isinstance(node, ast.Attribute | ast.Subscript):
            return False
        node = node.value


def writes_into_the_loop(source: str) -> list[str]:
    """Every place in ``source`` that assigns to, deletes or mutates the loop a hook sees.

    Reaching past the read-only view (its ``_loop``) counts as a write.
    """
    mutators = {"append", "extend", "insert", "update", "pop", "clear", "setdefault", "remove", "sort"}
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        aliases = {
            target.id
            for node in ast.walk(function)
            if isinstance(node, ast.Assign) and _is_loop(node.value, set())
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign | ast.Delete):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in mutators and _reaches_loop(node.func.value, aliases):
                    found.append(ast.unparse(node))
            elif isinstance(node, ast.Attribute) and node.attr == "_loop":
                found.append(ast.unparse(node))
            flat = [
                t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
            found += [
                ast.unparse(t)
                for t in flat
                if isinstance(t, ast.Attribute | ast.Subscript) and _reaches_loop(t, aliases)
            ]
    return found


def test_no_engine_function_is_longer_than_60_lines() -> None:
    too_long = {
        path.name: found
        for path in sorted(ENGINE.glob("*.py"))
        if (found := long_functions(path.read_text()))
    }
    assert not too_long


def test_hooks_never_write_into_the_loop() -> None:
    assert writes_into_the_loop(Path(hooks_module.__file__).read_text()) == []


def test_the_checks_catch_a_long_function_and_every_kind_of_write() -> None:
    assert long_functions("def f():\n" + "    x = 1\n" * 60) == ["f (61 lines)"]
    assert long_functions("def f():\n" + "    x = 1\n" * 59) == []
    hook = """
class Writes(HookBase):
    def after_epoch(self):
        self.trainer.last_checkpoint = "x"
        self.trainer.history[-1]["rank1"] = 1.0
        self.trainer.history[-1].update({"mAP": 2.0})
        loop = self.trainer
        loop.step += 1
        loop.epoch, other = 3, 4
        del loop.history[0]
        self.trainer._loop.epoch = 1
        self.seen = self.trainer.epoch
"""
    assert sorted(writes_into_the_loop(hook)) == [
        "loop.epoch",
        "loop.history[0]",
        "loop.step",
        "self.trainer._loop",
        "self.trainer._loop.epoch",
        "self.trainer.history[-1].update({'mAP': 2.0})",
        "self.trainer.history[-1]['rank1']",
        "self.trainer.last_checkpoint",
    ]


class _Batches:
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        del epoch, start_batch

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for _ in range(2):
            yield torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)


class _Recorder(HookBase):
    """Records every call; returns a figure per epoch and a final one; tries to write into the loop."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refused: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in (*POINTS, "after_train", "final_metrics"):
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)

    def epoch_metrics(self) -> dict[str, Any]:
        return {"figure": 10 * self.trainer.epoch}

    def after_epoch(self) -> None:
        view: Any = self.trainer
        for write in (
            lambda: setattr(view, "epoch", 1),
            lambda: setattr(view, "last_checkpoint", "x"),
            lambda: view.history[-1].update(figure=0),
            lambda: view.history.append({}),
            lambda: operator.setitem(view.history[-1], "figure", 0),
        ):
            try:
                write()
            except (AttributeError, TypeError) as error:
                self.refused.append(type(error).__name__)

    def final_metrics(self) -> dict[str, Any]:
        return {"final": True}


def test_the_loop_calls_the_hooks_in_order_and_records_what_they_return() -> None:
    model, recorder, history = nn.Linear(1, 1), _Recorder(), [{"epoch": 1, "loss": 0.0}]
    loop = TrainLoop(
        lambda images, pids: torch.tensor(0.5),
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loader=_Batches(),  # type: ignore[arg-type]
        schedule=lambda epoch: epoch / 10,
        epochs=3,
        start=ResumePosition(2),
        history=history,
        hooks=[recorder],
    )
    loop.run()
    epoch = ["before_epoch", *["before_step", "after_step"] * 2, "epoch_metrics", "after_epoch"]
    assert recorder.calls == ["before_train", *epoch, *epoch, "after_train", "final_metrics"]
    assert recorder.refused == ["AttributeError"] * 4 + ["TypeError"] + ["AttributeError"] * 4 + ["TypeError"]
    assert history == [
        {"epoch": 1, "loss": 0.0},
        {"epoch": 2, "loss": 0.5, "lr": 0.2, "steps": 2, "figure": 20},
        {"epoch": 3, "loss": 0.5, "lr": 0.3, "steps": 2, "figure": 30, "final": True},
    ]


def test_the_run_folder_files_are_named_in_one_place() -> None:
    names = {value for value in vars(run_folder).values() if isinstance(value, str) and "." in value}
    assert names >= {"checkpoint.pt", "checkpoint.prev.pt", "metrics.json", "train.log", "launch.json"}
    elsewhere = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "run_folder.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and ast.get_docstring(node):
                first = node.body[0]
                assert isinstance(first, ast.Expr)
                docstrings.add(id(first.value))
        elsewhere += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and any(node.value == name or node.value.endswith("/" + name) for name in names)
        ]
    assert not elsewhere
