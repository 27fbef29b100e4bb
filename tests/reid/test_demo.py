"""The demo: it reports its speed, and an interrupted demo continues with --resume."""

import json
from pathlib import Path

import pytest

from .test_cli_errors import assert_one_line_error, run_cli
from .test_run_guards import SETTINGS


def demo_arguments(output: Path, epochs: int, *extra: str) -> list[str]:
    sets = [part for setting in SETTINGS for part in ("--set", setting)]
    return ["demo", "--output-dir", str(output), "--epochs", str(epochs), "--no-progress", *sets, *extra]


def test_the_demo_prints_its_time_and_speed_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "demo"
    code, out, _ = run_cli(demo_arguments(output, 1), monkeypatch, capsys)
    assert code == 0
    timing = out.strip().splitlines()[-1]
    assert timing.startswith("elapsed ") and " steps/s)" in timing, timing

    code, _, err = run_cli(demo_arguments(output, 2), monkeypatch, capsys)  # the folder holds a run
    assert_one_line_error(code, err, "--resume")

    code, out, _ = run_cli(demo_arguments(output, 2, "--resume"), monkeypatch, capsys)
    assert code == 0, out
    metrics = json.loads((output / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["history"]] == [1, 2]  # epoch 1 was not trained again
    assert "untrained" in metrics


def test_the_demo_seeds_grid_runs_the_demo_config_at_three_seeds() -> None:
    from stadb_reid.commands.sweep.grid import load_grid
    from stadb_reid.config import load_config

    grid = load_grid("demo_seeds")
    assert grid.seeds == (0, 1, 2) and set(grid.runs) == {"stadb"}
    files, settings = grid.runs["stadb"]
    for seed in grid.seeds:
        run = load_config(list(files), {"seed": seed}, list(settings), recipe=grid.recipe)
        demo = load_config(["demo_cpu"], {"seed": seed, "data.root": run.data.root})
        assert run == demo
