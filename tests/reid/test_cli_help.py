"""Help text piped into a file is complete; loader workers default to the machine's CPUs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stadb_reid.config import load_config

ROOT = Path(__file__).parents[2]


def test_help_piped_is_the_full_text_and_names_cutout() -> None:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'examples'}", "COLUMNS": "80"}
    result = subprocess.run(
        [sys.executable, "-m", "stadb_reid", "train", "--help"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    text = " ".join(result.stdout.split())  # words wrap, none is cut
    assert "…" not in result.stdout
    assert "(market1501, demo_cpu, ablation_global...); repeatable." in text
    assert "data.cutout_prob and data.cutout_size" in text and "1/6 of data.height" in text


@pytest.mark.parametrize(("cpus", "workers"), [(2, 2), (1, 1), (64, 8)])
def test_loader_workers_default_to_the_cpus(monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(cpus)), raising=False)
    assert load_config().data.num_workers == workers
    assert load_config(dotlist=["data.num_workers=0"]).data.num_workers == 0
