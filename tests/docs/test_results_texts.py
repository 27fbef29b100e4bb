"""The results texts and records describe what ran (issue 24)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "examples" / "stadb_reid" / "RESULTS.md"
RECORDS = ROOT / "examples" / "stadb_reid" / "results"
TEXT = " ".join(RESULTS.read_text(encoding="utf-8").split())
NETWORKS = {
    "stadb": "STADB",
    "global": "global only",
    "bdb": "BDB comparator",
    "global_drop": "global + drop",
    "global_attention": "global + attention",
}


def test_the_table6_schedule_is_the_one_that_ran() -> None:
    assert "Adam at 1e-3 for epochs 1-4 and 1e-4 for epochs 5-6, no warm-up" in TEXT
    assert "half rate in the first epoch" not in TEXT
    assert "could not change the conclusion that this budget does not separate the networks" in TEXT


def test_every_record_of_a_run_before_the_warm_up_fix_says_what_ran() -> None:
    for path in [*RECORDS.glob("*.json"), *RECORDS.glob("table6_cuhk03_pair1/*_seed*.json")]:
        record = json.loads(path.read_text())
        if "history" in record:
            assert "history[].lr is the rate each epoch ran at" in record["note"], path.name
        elif "learning_rates" in record:
            assert record["learning_rates"] == [1e-3] * 4 + [1e-4] * 2, path.name
            assert record["note"].startswith("Learning rate as run: 1e-3 for epochs 1-4"), path.name


def test_the_peer_runs_are_listed_with_their_differences_and_not_read() -> None:
    assert "collapse" not in TEXT and "not the cause" not in TEXT
    for difference in ("| loss |", "| head |", "| augmentation |", "| optimiser |", "| schedule |",
                       "label smoothing 0.1", "betas 0.9 / 0.99", "random flip only"):  # fmt: skip
        assert difference in TEXT, difference


@pytest.mark.parametrize("name", NETWORKS)
def test_the_untrained_baselines_are_committed_records(name: str) -> None:
    record = json.loads((RECORDS / "table6_cuhk03_pair1" / f"{name}_untrained.json").read_text())
    assert record["untrained"] and record["command"].startswith("stadb-reid evaluate --untrained")
    assert record["config"]["data"]["height"] == 64 and record["config"]["model"]["pretrained"] is False
    assert record["git"]["commit"] and record["machine"]["processor"]
    # The table's row, to its one decimal (the record holds evaluate's two).
    row = TEXT.split(f"| {NETWORKS[name]}, untrained | - | ")[1].split(" |")[:5]
    keys = ("rank1", "rank5", "rank10", "mAP", "mINP")
    assert [float(cell) for cell in row] == pytest.approx([record["metrics"][key] for key in keys], abs=0.051)


def test_the_demo_range_in_the_readme_and_results_is_the_seed_records() -> None:
    report = json.loads((RECORDS / "demo_seeds.json").read_text())
    assert report["name"] == "demo_seeds" and report["settings"][0]["seeds"] == [0, 1, 2]
    trained, untrained = [], []
    for seed in (0, 1, 2):
        run = json.loads((RECORDS / "demo_seeds" / f"stadb_seed{seed}.json").read_text())
        base = json.loads((RECORDS / "demo_seeds" / f"stadb_untrained_seed{seed}.json").read_text())
        assert run["seed"] == base["seed"] == seed and "--config demo_cpu" in run["command"]
        assert base["command"].startswith("stadb-reid evaluate --untrained --config demo_cpu")
        assert run["learning_rates"] == [5e-4] + [1e-3] * 16 + [1e-4] * 7
        assert report["settings"][0]["per_seed"][str(seed)]["rank1"] == run["metrics"]["rank1"]
        trained.append(run["metrics"])
        untrained.append(base["metrics"])
        for name, metrics in (("untrained", base["metrics"]), ("24 epochs", run["metrics"])):
            row = TEXT.split(f"| STADB, {name} | {seed} | ")[1].split(" |")[:5]
            keys = ("rank1", "rank5", "rank10", "mAP", "mINP")
            assert [float(cell) for cell in row] == pytest.approx([metrics[key] for key in keys], abs=0.051)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for key, label in (("rank1", "rank-1"), ("mAP", "mAP")):
        low, high = (min(m[key] for m in untrained), max(m[key] for m in untrained))
        trained_low, trained_high = (min(m[key] for m in trained), max(m[key] for m in trained))
        readme_range = f"{label} {low:.1f}-{high:.1f}% -> {trained_low:.1f}-{trained_high:.1f}%"
        assert readme_range in readme, readme_range
        results_range = f"{label} {low:.1f}-{high:.1f} % -> {trained_low:.1f}-{trained_high:.1f} %"
        assert results_range in TEXT, results_range
