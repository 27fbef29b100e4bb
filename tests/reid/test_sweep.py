"""``stadb-reid sweep``: the grid file, resuming, the statistics and a tiny real sweep end to end."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_reid.commands.sweep import load_grid, sweep
from stadb_reid.commands.sweep.runner import SweepFailedError
from stadb_reid.commands.sweep.stats import paired_difference, summarise
from stadb_reid.engine.run_folder import RECORD_NAME
from stadb_reid.errors import ConfigError

from .test_cli_errors import assert_one_line_error, run_cli

# A stand-in for `python -m stadb_reid`: logs its arguments; fails once with 130 (a killed run,
# leaving a checkpoint) when told to, and otherwise writes the metrics a finished run writes.
FAKE_TRAIN = """
import json, sys
from pathlib import Path
arguments = sys.argv[1:]
folder = Path(arguments[arguments.index("--output-dir") + 1])
folder.mkdir(parents=True, exist_ok=True)
with open(folder.parents[1] / "calls.log", "a") as calls:
    calls.write(" ".join(arguments) + "\\n")
seed = int(arguments[arguments.index("--seed") + 1])
if "--set" in arguments and "fail=once" in arguments and not (folder / "checkpoint.pt").exists():
    (folder / "checkpoint.pt").write_text("half-way")
    sys.exit(130)
metrics = {"rank1": 10.0 + seed, "rank5": 20.0, "rank10": 30.0, "mAP": 5.0 + 2 * seed, "mINP": 1.0,
           "train_seconds": 10.0, "history": [{"epoch": 1, "loss": 1.0, "lr": 0.1, "steps": 5}],
           "config": {"data": {"num_identities": 2, "num_instances": 2}}}
(folder / "metrics.json").write_text(json.dumps(metrics))
"""


def write_grid(tmp_path: Path, *, fail: bool = False, seeds: str = "[0, 1]") -> Path:
    grid = tmp_path / "grid.yaml"
    extra = ', set: ["fail=once"]' if fail else ""
    grid.write_text(
        f"name: fake\nseeds: {seeds}\nruns:\n  a: {{config: [x]{extra}}}\n  b: {{}}\ncompare: [[a, b]]\n"
    )
    return grid


def fake_program(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return [sys.executable, str(script)]


def calls(output: Path) -> list[str]:
    return (output / "calls.log").read_text().splitlines()


def test_runs_seed_major_and_write_the_report(tmp_path: Path) -> None:
    output = tmp_path / "out"
    report = sweep(write_grid(tmp_path), output, jobs=1, program=fake_program(tmp_path), log=lambda _: None)
    assert [line.split("--output-dir ")[1].split()[0] for line in calls(output)] == [
        str(output / f) for f in ("a/seed0", "b/seed0", "a/seed1", "b/seed1")
    ]
    assert all("--resume" in line for line in calls(output))
    assert {s["name"]: s["mean"]["rank1"] for s in report["settings"]} == {"a": 10.5, "b": 10.5}
    record = json.loads((output / "a/seed1" / RECORD_NAME).read_text())
    assert record["seed"] == 1 and record["train_images_per_second"] == 2.0  # 5 steps x 4 images / 10 s
    assert {"platform", "processor", "cpu_capability", "cpu_native_bf16", "threads", "torch"} <= set(
        record["machine"]
    )
    assert (output / "report.md").read_text().count("| a |") == 1
    assert (output / "report.png").stat().st_size > 0


def test_a_finished_run_is_not_run_again_and_a_killed_one_resumes(tmp_path: Path) -> None:
    output, program = tmp_path / "out", fake_program(tmp_path)
    with pytest.raises(SweepFailedError, match="2 run"):
        sweep(write_grid(tmp_path, fail=True), output, jobs=2, program=program, log=lambda _: None)
    first = calls(output)
    assert len(first) == 4 and not (output / "a/seed0" / RECORD_NAME).exists()
    assert (output / "b/seed0" / RECORD_NAME).exists()
    report = sweep(write_grid(tmp_path, fail=True), output, jobs=2, program=program, log=lambda _: None)
    second = calls(output)[len(first) :]
    assert sorted(line.split("--output-dir ")[1].split()[0] for line in second) == [
        str(output / "a/seed0"),
        str(output / "a/seed1"),
    ]
    assert len(report["settings"]) == 2 and all(len(s["seeds"]) == 2 for s in report["settings"])
    sweep(write_grid(tmp_path, fail=True), output, jobs=2, program=program, log=lambda _: None)
    assert len(calls(output)) == len(first) + len(second)  # everything finished: nothing runs


def test_a_changed_grid_does_not_reuse_runs_of_the_old_one(tmp_path: Path) -> None:
    output, program = tmp_path / "out", fake_program(tmp_path)
    sweep(write_grid(tmp_path), output, jobs=1, program=program, log=lambda _: None)
    with pytest.raises(ConfigError, match="another command line"):
        sweep(write_grid(tmp_path, fail=True), output, jobs=1, program=program, log=lambda _: None)


def test_summaries_match_hand_computed_values() -> None:
    summary = summarise(
        {0: {"rank1": 10.0, "mAP": 4.0}, 1: {"rank1": 12.0, "mAP": 6.0}, 2: {"rank1": 17.0, "mAP": 8.0}}
    )
    assert summary["mean"] == {"rank1": 13.0, "mAP": 6.0}
    assert summary["std"]["rank1"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    assert summary["std"]["mAP"] == pytest.approx(2.0)
    # d = (1, 2, 3): mean 2, s = 1, t(0.975, 2) = 4.302652729911275
    d = paired_difference("x", "y", "rank1", {0: 5.0, 1: 7.0, 2: 9.0}, {0: 4.0, 1: 5.0, 2: 6.0})
    half = 4.302652729911275 / math.sqrt(3)
    assert d.mean == 2.0 and d.std == 1.0 and d.ci95 == pytest.approx((2 - half, 2 + half))
    assert not d.resolved


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=2, max_size=8))
def test_paired_interval_agrees_with_numpy(pairs: list[tuple[float, float]]) -> None:
    a = {seed: pair[0] for seed, pair in enumerate(pairs)}
    b = {seed: pair[1] for seed, pair in enumerate(pairs)}
    d = paired_difference("a", "b", "mAP", a, b)
    diffs = np.array([x - y for x, y in pairs])
    assert d.mean == pytest.approx(diffs.mean(), abs=1e-9)
    assert d.std == pytest.approx(diffs.std(ddof=1), abs=1e-9)
    assert d.ci95 is not None and d.ci95[0] <= d.mean <= d.ci95[1]
    assert d.resolved == (d.ci95[0] > 0 or d.ci95[1] < 0)


def test_one_seed_has_no_interval_and_disjoint_seeds_are_refused() -> None:
    assert paired_difference("a", "b", "mAP", {0: 1.0}, {0: 0.5}).ci95 is None
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference("a", "b", "mAP", {0: 1.0}, {1: 0.5})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("runs: {a: {}}\nseed: [0]", "unknown key 'seed'"),
        ("seeds: [0, 0]\nruns: {a: {}}", "must not repeat"),
        ("seeds: [-1]\nruns: {a: {}}", "non-negative"),
        ("runs: {}", "runs must map"),
        ("runs: {a: {cfg: [x]}}", "runs.a takes only config and set"),
        ("runs: {a: {}}\ncompare: [[a, z]]", "pairs of run names"),
        ("runs: {'a b': {}}", "must be letters"),
        ("runs: {a: {}}\nseed_keys: [[data]]", "seed_keys must be a list of strings"),
    ],
)
def test_bad_grids_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_grid(grid)


def test_bundled_grids_load() -> None:
    grid = load_grid("table6_cuhk03_pair1")
    assert set(grid.runs) == {"stadb", "global", "bdb", "global_drop", "global_attention"}
    assert len(grid.seeds) >= 3


def test_seed_keys_make_the_seed_pick_the_viper_split_too() -> None:
    from stadb_reid.config import load_config

    grid = load_grid("viper_10splits")
    assert grid.seeds == tuple(range(10)) and set(grid.runs) == {"stadb", "global", "bdb"}
    for spec in grid.specs():
        arguments = spec.train_arguments(Path("out"))
        assert arguments[-4:] == ["--set", f"data.options.split_seed={spec.seed}", "--seed", str(spec.seed)]
        config = load_config(
            list(spec.config), {"seed": spec.seed}, [*spec.settings, arguments[-3]], recipe=grid.recipe
        )
        assert config.data.options["split_seed"] == spec.seed


def test_cli_names_a_missing_grid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(
        ["sweep", str(tmp_path / "nope.yaml"), "--output-dir", str(tmp_path)], monkeypatch, capsys
    )
    assert_one_line_error(code, err, "sweep grid not found")


def test_a_report_of_no_finished_run_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    arguments = ["sweep", str(write_grid(tmp_path)), "--output-dir", str(tmp_path / "out"), "--report-only"]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, "no finished run of grid fake")


def test_a_tiny_real_sweep_end_to_end(tmp_path: Path) -> None:
    tiny = (
        "data.options={num_train_identities: 3, num_test_identities: 2, num_cameras: 2, "
        "images_per_identity_per_camera: 2, num_distractors: 0, height: 32, width: 16}"
    )
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: tiny\nrecipe: defaults\n"
        f"set: ['data.dataset=synthetic', 'data.root={tmp_path / 'data'}', '{tiny}', 'data.height=32',\n"
        "      'data.width=16', 'data.num_identities=2', 'data.num_instances=2', 'data.num_workers=0',\n"
        "      'model.backbone=resnet18', 'model.pretrained=false', 'optim.epochs=1',\n"
        "      'optim.warmup_epochs=1']\n"
        "seeds: [0, 1]\n"
        "runs: {global: {set: [model.variant=global]}, stadb: {}}\n"
        "compare: [[stadb, global]]\n"
    )
    report = sweep(grid, tmp_path / "out", jobs=2, log=lambda _: None)
    assert [len(s["seeds"]) for s in report["settings"]] == [2, 2]
    assert {c["metric"] for c in report["comparisons"]} == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    record = json.loads((tmp_path / "out/stadb/seed1" / RECORD_NAME).read_text())
    assert record["config"]["seed"] == 1 and record["train_steps"] > 0


RESULTS = Path(__file__).parents[2] / "examples/stadb_reid/results/table6_cuhk03_pair1"
WARM_UP_KEYS = {"output_dir", "optim.warmup_epochs", "optim.warmup_step"}


@pytest.mark.parametrize("record_path", sorted(RESULTS.glob("*_seed*.json")), ids=lambda p: p.stem)
def test_the_committed_runs_are_what_the_bundled_grid_resolves_to(record_path: Path) -> None:
    # The grid must still describe the runs in results/: every recorded key has the value the grid
    # gives now, and keys added since have their schema default (recipe `defaults` = the old trainer).
    # The warm-up settings changed meaning (issue 24): they are compared by the rate of every epoch,
    # the grid's now against the record's learning_rates (the rates the run ran at).
    from stadb_reid.config import config_to_dict, load_config
    from stadb_reid.config.files import flatten_config
    from stadb_reid.engine.schedule import optim_schedule

    record = json.loads(record_path.read_text())
    grid = load_grid("table6_cuhk03_pair1")
    files, settings = grid.runs[record["name"]]
    now = load_config(list(files), {"seed": record["seed"]}, list(settings), recipe=grid.recipe)
    resolved = flatten_config(config_to_dict(now))
    recorded = flatten_config(record["config"])
    schema = flatten_config(config_to_dict(load_config()))
    mismatched = {
        key: (recorded.get(key, schema[key]), resolved[key])
        for key in resolved
        if key not in WARM_UP_KEYS and recorded.get(key, schema[key]) != resolved[key]
    }
    assert not mismatched
    rates = [optim_schedule(now.optim)(epoch) for epoch in range(1, now.optim.epochs + 1)]
    assert rates == pytest.approx(record["learning_rates"], rel=1e-12)
    assert set(recorded) - {"output_dir"} <= set(resolved)
