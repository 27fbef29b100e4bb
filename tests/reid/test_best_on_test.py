"""Interim evaluations (``eval.every``) and the best-on-test epoch reported next to the final one.

The STADB authors' ``main_reid.py`` evaluates every ``eval_step`` epochs and after the last, and reports
the highest rank-1 (the earliest epoch on ties: ``is_best = rank1 > best_rank1``). Here the loop runs
with a stub step and a stub evaluation, so no model is trained.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.config import load_config
from stadb_reid.engine.hooks import BEST_ON_TEST_NOTE, EvalHook
from stadb_reid.engine.loop import TrainLoop
from stadb_reid.engine.preflight import validate_config
from stadb_reid.engine.state import ResumePosition
from stadb_reid.errors import ConfigError


class OneBatchLoader:
    """A loader of one dummy batch per epoch."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        del epoch, start_batch

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)


def metrics_of(rank1: float, epoch: int) -> dict[str, float]:
    """Distinct figures per epoch, so that the reported entry can be traced to its epoch."""
    return {"rank1": rank1, "rank5": 99.0, "rank10": 100.0, "mAP": 10.0 + epoch, "mINP": 1, "mAP_at_50": 9.0}


def run(scores: list[float], every: int, start_epoch: int = 1, history: list[dict[str, Any]] | None = None):
    """Run epochs ``start_epoch..len(scores)`` with EvalHook; epoch e evaluates to ``scores[e - 1]``."""
    history = [] if history is None else history
    calls: list[int] = []
    model = nn.Linear(1, 1)

    def evaluate() -> dict[str, float]:
        epoch = min(loop.epoch, loop.epochs)  # the final evaluation follows the last epoch
        calls.append(epoch)
        return metrics_of(scores[epoch - 1], epoch)

    hook = EvalHook(evaluate, every, is_main=True, write=lambda _: None)
    loop = TrainLoop(
        lambda images, pids: torch.tensor(0.0),
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loader=OneBatchLoader(),  # type: ignore[arg-type]
        schedule=lambda epoch: 0.1,
        epochs=len(scores),
        start=ResumePosition(start_epoch),
        history=history,
        hooks=[hook],
    )
    loop.run()
    return hook, calls


@settings(max_examples=100, deadline=None)
@given(scores=st.lists(st.integers(0, 5).map(float), min_size=1, max_size=12), every=st.integers(1, 14))
def test_best_on_test_is_the_earliest_max_rank1_epoch_and_final_stays(scores, every):
    hook, calls = run(scores, every)
    epochs = len(scores)
    expected_calls = [e for e in range(1, epochs) if e % every == 0] + [epochs]
    assert calls == expected_calls
    assert hook.final == metrics_of(scores[-1], epochs)  # the final epoch's figures, whatever the best
    best_epoch = expected_calls[0]
    for epoch in expected_calls:  # strictly greater replaces: the earliest maximum wins
        if scores[epoch - 1] > scores[best_epoch - 1]:
            best_epoch = epoch
    best = hook.best_on_test()
    expected = metrics_of(scores[best_epoch - 1], best_epoch)
    assert best == {"epoch": best_epoch, **expected, "note": BEST_ON_TEST_NOTE}


def test_without_interim_evaluation_there_is_no_best_on_test():
    hook, calls = run([3.0, 9.0, 1.0], every=0)
    assert calls == [3] and hook.best_on_test() is None
    assert hook.report_lines("final") == ["final  mAP@50 9.0%"]


def test_report_lines_name_the_best_epoch_as_test_set_selection():
    hook, _ = run([3.0, 9.0, 1.0, 2.0], every=2)
    final, best = hook.report_lines("final")
    assert final == "final  mAP@50 9.0%"
    assert best == (
        "best on test: epoch 2, rank-1 9.0%  mAP 12.0%  mAP@50 9.0% "
        "(model selection on the test set: not a held-out estimate)"
    )


def test_resumed_run_keeps_the_best_of_the_earlier_session():
    scores = [1.0, 8.0, 2.0, 3.0]
    earlier = [{"epoch": 1, "loss": 0.0}, {"epoch": 2, "loss": 0.0, **metrics_of(8.0, 2)}]
    hook, calls = run(scores, every=2, start_epoch=3, history=earlier)
    assert calls == [4]
    assert hook.final["rank1"] == 3.0
    best = hook.best_on_test()
    assert best is not None and (best["epoch"], best["rank1"], best["mAP"]) == (2, 8.0, 12.0)


def test_other_ranks_report_nothing():
    hook = EvalHook(lambda: metrics_of(1.0, 1), every=1, is_main=False)
    hook.after_train()
    assert hook.final == {} and hook.best_on_test() is None


@pytest.mark.parametrize(("key", "value"), [("eval.every", -1), ("eval.ap_at", -2)])
def test_negative_every_or_ap_at_is_a_config_error(key: str, value: int):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(load_config([], {key: value}))


def test_eval_every_and_flip_options_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("stadb_reid.engine.train", lambda config, **_: seen.setdefault("train", config))
    evaluate = "stadb_reid.commands.evaluate.evaluate_untrained"
    monkeypatch.setattr(evaluate, lambda config, **_: seen.update(evaluate=config) or {})
    data = ["--dataset", "synthetic", "--data-root", str(tmp_path), "--no-progress"]
    result = CliRunner().invoke(app, ["train", *data, "--eval-every", "5", "--flip"])
    assert result.exit_code == 0, result.output
    assert (seen["train"].eval.every, seen["train"].eval.flip) == (5, True)
    seen.clear()
    flipping = tmp_path / "flip.yaml"
    flipping.write_text("eval:\n  flip: true\n")
    result = CliRunner().invoke(app, ["train", *data, "--config", str(flipping), "--no-flip"])
    assert result.exit_code == 0, result.output
    assert seen["train"].eval.flip is False  # the option overrides the config file
    result = CliRunner().invoke(app, ["evaluate", "--untrained", *data, "--flip"])
    assert result.exit_code == 0, result.output
    assert seen["evaluate"].eval.flip is True
    seen.clear()
    result = CliRunner().invoke(app, ["train", *data, "--eval-every", "-1"])
    assert result.exit_code == 2 and not seen
