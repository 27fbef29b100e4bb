"""Smoke tests of the benchmark scripts in ``benchmarks/`` (tiny settings; the figures are not checked)."""

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEP = ROOT / "benchmarks" / "train_step.py"


def load_train_step() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_train_step", TRAIN_STEP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_train_step_quick_run_writes_consistent_results(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(TRAIN_STEP),
        "--quick",
        "--devices",
        "cpu",
        "--variants",
        "global,stadb",
        "--precisions",
        "fp32,bf16",
        "--formats",
        "channels_last",
        "--memory-steps",
        "1",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CUDA: not measured" in result.stdout

    report = json.loads((tmp_path / "train_step.json").read_text())
    rows = {(row["variant"], row["precision"]): row for row in report["results"]}
    assert set(rows) == {(v, p) for v in ("global", "stadb") for p in ("fp32", "bf16")}
    times = report["runs"]["cpu"]["step_seconds"]
    for (variant, precision), row in rows.items():
        steps = times[f"{variant}/{precision}/channels_last"]
        assert len(steps) == 2 and all(t > 0 for t in steps)
        assert row["step_ms"] == pytest.approx(1e3 * statistics.median(steps))
        assert row["images_per_s"] == pytest.approx(8 / (row["step_ms"] / 1e3))
        global_ms = rows[("global", precision)]["step_ms"]
        assert row["vs_global"] == pytest.approx(row["step_ms"] / global_ms)
        assert row["vs_fp32"] == pytest.approx(row["step_ms"] / rows[(variant, "fp32")]["step_ms"])
        if sys.platform == "linux":
            assert row["peak_bytes"] > 0
    assert rows[("stadb", "fp32")]["parameters"] > rows[("global", "fp32")]["parameters"]

    table = (tmp_path / "train_step.md").read_text()
    assert table.count("| cpu (batch 8) |") == 4
    pytest.importorskip("matplotlib")
    assert (tmp_path / "train_step.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--devices", "cpu", "--precisions", "fp16"], "--precisions"),
        (["--devices", "cpu", "--batch", "6"], "--batch (6)"),
        (["--devices", "cpu", "--classes", "1"], "--classes (1)"),
        (["--variants", "global,nope"], "nope"),
    ],
)
def test_train_step_rejects_bad_arguments(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_train_step().main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
