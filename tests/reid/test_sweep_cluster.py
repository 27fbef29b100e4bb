"""``stadb-reid sweep --launcher submitit`` (submitit's local executor) and ``--status`` (both launchers)."""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from stadb_reid.commands.sweep import sweep, sweep_status
from stadb_reid.commands.sweep.runner import SweepFailedError
from stadb_reid.commands.sweep.status import format_status
from stadb_reid.engine import load_checkpoint
from stadb_reid.engine.run_folder import RECORD_NAME

from .test_cli_errors import run_cli

pytest.importorskip("submitit")
from stadb_reid.commands.sweep.submitit_launcher import SchedulerOptions

# A stand-in for `python -m stadb_reid train`: `fail=always` ends with an error line, `fail=once`
# is stopped once (exit 130, as the trainer on SIGTERM), `block=yes` waits for OUT/release.
FAKE_TRAIN = """
import json, sys, time
from pathlib import Path
arguments = sys.argv[1:]
folder = Path(arguments[arguments.index("--output-dir") + 1])
folder.mkdir(parents=True, exist_ok=True)
seed = int(arguments[arguments.index("--seed") + 1])
if "fail=always" in arguments:
    print("error: the loss is nan", flush=True)
    sys.exit(1)
if "fail=once" in arguments and not (folder / "checkpoint.pt").exists():
    (folder / "checkpoint.pt").write_text("half-way")
    print("interrupted: stopped at epoch 1, step 2/5", flush=True)
    sys.exit(130)
while "block=yes" in arguments and not (folder.parents[1] / "release").exists():
    time.sleep(0.05)
metrics = {"rank1": 10.0 + seed, "rank5": 20.0, "rank10": 30.0, "mAP": 5.0 + 2 * seed, "mINP": 1.0,
           "train_seconds": 10.0, "history": [{"epoch": 1, "loss": 1.0, "lr": 0.1, "steps": 5}],
           "config": {"data": {"num_identities": 2, "num_instances": 2}}}
(folder / "metrics.json").write_text(json.dumps(metrics))
"""
GRID = """name: fake
seeds: {seeds}
runs:
  ok: {}
  broken: {set: [fail=always]}
  halted: {set: [fail=once]}
  slow: {set: [block=yes]}
"""


def fake_sweep(tmp_path: Path, seeds: str = "[0, 1]") -> tuple[Path, list[str]]:
    (tmp_path / "grid.yaml").write_text(GRID.replace("{seeds}", seeds))
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    return tmp_path / "grid.yaml", [sys.executable, str(tmp_path / "fake_train.py")]


def watch_while(output: Path, until: Any, then: Any) -> threading.Thread:
    """Call ``then()`` once ``until()`` holds (or after 300 s), then release the blocked runs."""

    def watch() -> None:
        try:
            wait_for(until)
            then()
        finally:
            (output / "release").touch()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Any, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def states(grid: Path, output: Path) -> dict[str, str]:
    return {status.folder: status.state for status in sweep_status(grid, output)}


def slow_running_and_seed0_ended(grid: Path, output: Path) -> bool:
    found = {status.folder: status for status in sweep_status(grid, output)}
    seed0 = [
        status for folder, status in found.items() if folder.endswith("seed0") and folder != "slow/seed0"
    ]
    return found["slow/seed0"].state == "running" and not any(status.active for status in seed0)


@pytest.mark.parametrize("launcher", ["local", "submitit"])
def test_status_shows_every_run_while_the_sweep_runs_and_after(tmp_path: Path, launcher: str) -> None:
    # One seed through submitit (each job starts a Python that imports the trainer), two locally.
    seeds = (0, 1) if launcher == "local" else (0,)
    grid, program = fake_sweep(tmp_path, str(list(seeds)))
    output = tmp_path / "out"
    assert set(states(grid, output).values()) == {"queued"}
    scheduler = SchedulerOptions(cluster="local", cpus_per_task=1, timeout_min=10)
    while_running: dict[str, Any] = {}
    watcher = watch_while(
        output,
        lambda: slow_running_and_seed0_ended(grid, output),
        lambda: while_running.update({status.folder: status for status in sweep_status(grid, output)}),
    )
    with pytest.raises(SweepFailedError):  # the local launcher's SIGTERM handler needs the main thread
        sweep(
            grid, output, jobs=1, program=program, log=lambda _: None, launcher=launcher, scheduler=scheduler
        )
    watcher.join()

    assert while_running["ok/seed0"].state == "done"
    assert while_running["broken/seed0"].state == "failed"
    assert while_running["broken/seed0"].detail == "error: the loss is nan", "the last line of its log"
    assert while_running["halted/seed0"].state == "stopped"
    assert while_running["slow/seed0"].wall_seconds > 0
    if launcher == "local":  # one run at a time: the second seed waits
        assert while_running["ok/seed1"].state == "queued"
    after = states(grid, output)
    assert after == {
        f"{name}/seed{seed}": "failed" if name == "broken" else "stopped" if name == "halted" else "done"
        for seed in seeds
        for name in ("ok", "broken", "halted", "slow")
    }
    table = format_status(sweep_status(grid, output))
    n = len(seeds)
    assert f"{2 * n} done, 0 running, 0 queued, {n} stopped, {n} failed" in table


def test_the_cli_prints_the_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grid, _ = fake_sweep(tmp_path)
    code, out, _ = run_cli(
        ["sweep", str(grid), "--output-dir", str(tmp_path / "o"), "--status"], monkeypatch, capsys
    )
    assert code in (0, None)
    assert out.splitlines()[1].split() == ["ok/seed0", "queued", "0:00:00", "not", "started"]


def test_submitit_records_and_report_match_the_local_launcher(tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(
        "name: fake\nseeds: [0, 1]\nruns: {a: {}, b: {config: [x]}}\ncompare: [[a, b]]\n"
    )
    (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
    program = [sys.executable, str(tmp_path / "fake_train.py")]
    scheduler = SchedulerOptions(cluster="local", cpus_per_task=1, timeout_min=10)
    reports = {
        launcher: sweep(
            tmp_path / "grid.yaml", tmp_path / launcher, program=program, log=lambda _: None,
            launcher=launcher, scheduler=scheduler, settings=["data.root=/cluster/data"],
        )
        for launcher in ("local", "submitit")
    }  # fmt: skip
    assert reports["local"]["settings"] == reports["submitit"]["settings"]
    assert reports["local"]["comparisons"] == reports["submitit"]["comparisons"]
    assert "--set data.root=/cluster/data" in reports["submitit"]["command"]
    for folder in ("a/seed0", "b/seed1"):
        local, cluster = (json.loads((tmp_path / d / folder / RECORD_NAME).read_text()) for d in reports)
        moved = [a.replace(str(tmp_path / "submitit"), str(tmp_path / "local")) for a in cluster["arguments"]]
        assert moved == local["arguments"]
        assert cluster["arguments"][-3:] == ["data.root=/cluster/data", "--seed", folder[-1]]
        assert local["metrics"] == cluster["metrics"] and cluster["sessions"] == 1
    assert (tmp_path / "submitit" / "submitit").is_dir(), "submitit's own files stay in one folder"


TINY_GRID = """name: tiny
recipe: defaults
set: ['data.dataset=synthetic', 'data.root={root}', 'data.options={{num_train_identities: 24,
      num_test_identities: 2, num_cameras: 2, images_per_identity_per_camera: 2, num_distractors: 0,
      height: 32, width: 16}}', 'data.height=32', 'data.width=16', 'data.num_identities=2',
      'data.num_instances=2', 'data.num_workers=0', 'model.backbone=resnet10t', 'model.pretrained=false',
      'optim.epochs=4', 'optim.warmup_epochs=1', 'deterministic=true']
seeds: [0]
runs: {{stadb: {{}}}}
"""


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the job's process through /proc")
def test_a_preempted_job_is_requeued_and_ends_with_the_uninterrupted_record(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(TINY_GRID.format(root=tmp_path / "data"))
    sweep(grid, tmp_path / "reference", threads=1, log=lambda _: None)  # the job's cpus_per_task

    output, run = tmp_path / "cluster", tmp_path / "cluster/stadb/seed0"
    scheduler = SchedulerOptions(cluster="local", cpus_per_task=1, timeout_min=30)
    # What SLURM does before preemption or the time limit: USR2 to the job's task (the trainer's
    # parent). LocalJob._interrupt() would signal submitit's controller, which does not forward it.
    watcher = watch_while(
        output,
        (run / "checkpoint.pt").exists,
        lambda: os.kill(parent_of(json.loads((run / "launch.json").read_text())["pid"]), signal.SIGUSR2),
    )
    sweep(grid, output, log=lambda _: None, launcher="submitit", scheduler=scheduler)
    watcher.join()

    sessions = json.loads((run / "sessions.json").read_text())
    assert [session["exit_code"] for session in sessions] == [130, 0], "stopped with a checkpoint, resumed"
    log = (run / "train.log").read_text()
    assert "interrupted: stopped at epoch" in log and "resuming from" in log
    record = json.loads((run / RECORD_NAME).read_text())
    reference = json.loads((tmp_path / "reference/stadb/seed0" / RECORD_NAME).read_text())
    # the wall time and the command line (its own --output-dir) are the run's own; every figure is equal
    own = {"train_seconds", "command"}
    assert {k: v for k, v in record["metrics"].items() if k not in own} == {
        k: v for k, v in reference["metrics"].items() if k not in own
    }
    weights = load_checkpoint(run / "checkpoint.pt")["model"]
    expected = load_checkpoint(tmp_path / "reference/stadb/seed0/checkpoint.pt")["model"]
    assert all(torch.equal(weights[k], v) for k, v in expected.items() if isinstance(v, torch.Tensor))
