"""The learning-rate warm-up: the authors' rates, and a real ramp for every length and step."""

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stadb_reid.config import load_config
from stadb_reid.engine.schedule import learning_rate, optim_schedule, schedule_changes

from .test_cli_errors import run_cli


def authors_adjust_lr(ep: int) -> float:
    """``adjust_lr`` of the authors' ``main_reid.py``, called with ``epoch + 1`` (epochs from 1)."""
    if ep < 50:
        return 1e-4 * (ep // 5 + 1)
    if ep < 200:
        return 1e-3
    if ep < 300:
        return 1e-4
    return 1e-5


def test_the_authors_values_give_their_rate_in_every_epoch() -> None:
    rates = [learning_rate(epoch, warmup_epochs=50, warmup_step=5) for epoch in range(1, 601)]
    assert rates == pytest.approx([authors_adjust_lr(epoch) for epoch in range(1, 601)], rel=1e-12)
    assert rates[:5] == pytest.approx([1e-4, 1e-4, 1e-4, 1e-4, 2e-4])  # first stage: epochs 1-4


def test_a_two_epoch_warm_up_in_one_epoch_steps_starts_at_half_the_rate() -> None:
    rates = [learning_rate(e, warmup_epochs=2, warmup_step=1, milestones=[5]) for e in range(1, 7)]
    assert rates == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])


def test_one_epoch_steps_ramp_linearly() -> None:
    assert [learning_rate(e, warmup_epochs=10, warmup_step=1) for e in range(1, 12)] == pytest.approx(
        [1e-4 * e for e in range(1, 11)] + [1e-3]
    )


@given(warmup=st.integers(2, 120), data=st.data(), base=st.floats(1e-6, 1.0))
def test_every_warm_up_ramps_over_its_epochs(warmup: int, data: st.DataObject, base: float) -> None:
    step = data.draw(st.integers(1, warmup - 1), label="step")
    rates = [
        learning_rate(e, base_lr=base, warmup_epochs=warmup, warmup_step=step, milestones=[])
        for e in range(1, warmup + 2)
    ]
    assert rates[0] < base  # it starts below the full rate...
    assert all(a <= b for a, b in pairwise(rates))  # ...never falls...
    assert max(rates) <= base and rates[warmup - 1 :] == [base, base]  # ...and is full from epoch N
    # It is below the full rate until its last stage, which starts within `step` epochs of N.
    assert all(rate < base for rate in rates[: warmup - step - 1])
    # It changes only at epoch 2 (one-epoch steps) or at multiples of the step.
    changes = [e for e in range(2, warmup + 1) if rates[e - 1] != rates[e - 2]]
    assert all(e % step == 0 for e in changes)


def test_no_warm_up_runs_the_full_rate_from_epoch_one() -> None:
    for warmup in (0, 1):
        assert learning_rate(1, warmup_epochs=warmup, warmup_step=1) == 1e-3


def test_schedule_changes_of_the_table6_settings() -> None:
    settings = ["optim.epochs=6", "optim.warmup_epochs=2", "optim.warmup_step=1", "optim.milestones=[5]"]
    optim = load_config(["cuhk03_labeled"], dotlist=settings).optim
    runs = schedule_changes(optim_schedule(optim), optim.epochs)
    assert [(first, last) for first, last, _ in runs] == [(1, 1), (2, 4), (5, 6)]
    assert [rate for _, _, rate in runs] == pytest.approx([5e-4, 1e-3, 1e-4])


def test_info_prints_the_learning_rate_of_every_epoch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["info", "--config", "demo_cpu"], monkeypatch, capsys)
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("# learning rate per epoch (24 epochs):")
    assert lines[start + 1 : start + 4] == [
        "#   epoch 1: 0.0005",
        "#   epochs 2-17: 0.001",
        "#   epochs 18-24: 0.0001",
    ]
    code, out, err = run_cli(["info", "--recipe", "reference", "--config", "market1501"], monkeypatch, capsys)
    assert "#   epochs 1-4: 0.0001\n#   epochs 5-9: 0.0002\n" in out and "#   epochs 45-199: 0.001\n" in out
