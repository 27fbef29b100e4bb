"""Running a sweep's training runs: N at a time, the cores split between them, resumable.

Every run is an ordinary ``stadb-reid train --resume`` in its own folder, in a child process whose
output goes to the folder's ``train.log``. A run whose folder holds its ``record.json`` finished and
is skipped; any other run is started with ``--resume``, so an interrupted one continues from its last
checkpoint. The record holds the command, the resolved config, the seed, the metrics, the git commit,
the machine, the wall time of every session and the training images per second.
"""

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...engine.precision import cpu_has_native_bf16
from ...engine.run_folder import LAUNCH_NAME, LOG_NAME, METRICS_NAME, RECORD_NAME, SESSIONS_NAME
from ...errors import ConfigError, ReIDError, TrainingInterruptedError
from .grid import RunSpec
from .records import load_record

__all__ = [
    "SweepFailedError",
    "close_session",
    "machine_description",
    "read_record",
    "run_sweep",
    "start_training",
]


class SweepFailedError(ReIDError, RuntimeError):
    """Some runs of a sweep ended with an error; the others finished."""

    exit_code = 1


@dataclass
class _Running:
    spec: RunSpec
    process: subprocess.Popen[bytes]
    started: float


def read_record(output_dir: Path, spec: RunSpec) -> dict[str, Any] | None:
    """The finished run's checked record, or ``None``; a record of another command line is an error."""
    path = output_dir / spec.folder / RECORD_NAME
    if not path.exists():
        return None
    record = load_record(path, spec)
    if record.get("arguments") != spec.train_arguments(output_dir)[1:]:
        raise ConfigError(
            f"{path} records another command line than this grid gives for {spec.folder}; "
            "use another --output-dir (or move that run away) to run the changed grid"
        )
    return record


def run_sweep(
    specs: Sequence[RunSpec],
    output_dir: Path,
    *,
    jobs: int,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    program: Sequence[str] = (sys.executable, "-m", "stadb_reid"),
) -> list[dict[str, Any]]:
    """Run every spec not finished yet, ``jobs`` at a time, and return all records in spec order.

    Args:
        specs: The runs, in the order to start them.
        output_dir: The sweep's folder; run ``s`` trains in ``output_dir / s.folder``.
        jobs: Runs at a time.
        threads: Torch threads per run; by default the machine's cores divided by ``jobs``.
        log: Where status lines go.
        program: The command that starts ``stadb-reid`` in a child process.

    Raises:
        SweepFailedError: A run exited with an error (the others still ran); its log is named.
        TrainingInterruptedError: On SIGINT/SIGTERM, after the running children saved checkpoints.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    pending = [spec for spec in specs if read_record(output_dir, spec) is None]
    finished = len(specs) - len(pending)
    log(f"sweep: {finished} of {len(specs)} runs finished; {jobs} at a time, {threads} threads each")
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: list[_Running] = []
    failed: list[str] = []
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                running.append(_start(pending.pop(0), output_dir, program, environment, log))
            time.sleep(1.0)
            for job in [job for job in running if job.process.poll() is not None]:
                running.remove(job)
                _finish(job, output_dir, threads, failed, log)
    except KeyboardInterrupt:
        _stop(running, log)
        raise TrainingInterruptedError(
            "sweep stopped; the running runs saved checkpoints: run the same sweep command to continue"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    if failed:
        raise SweepFailedError(f"{len(failed)} run(s) failed, see {', '.join(failed)}")
    return [record for spec in specs if (record := read_record(output_dir, spec)) is not None]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start(
    spec: RunSpec,
    output_dir: Path,
    program: Sequence[str],
    environment: dict[str, str],
    log: Callable[[str], None],
) -> _Running:
    log(f"start {spec.folder}")
    process = start_training(spec, output_dir, program, environment, {"launcher": "local"})
    return _Running(spec, process, time.time())


def start_training(
    spec: RunSpec,
    output_dir: Path,
    program: Sequence[str],
    environment: dict[str, str],
    launch: dict[str, Any],
) -> subprocess.Popen[bytes]:
    """Start the run's ``train --resume`` in a child process that logs to the run's ``train.log``.

    ``launch.json`` in the run's folder then names the launcher (``launch``), host, process and start.
    """
    folder = output_dir / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    command = [*program, *spec.train_arguments(output_dir)]
    with (folder / LOG_NAME).open("ab") as output:
        output.write(f"$ {' '.join(command)}\n".encode())
        output.flush()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    state = {**launch, "host": socket.gethostname(), "pid": process.pid, "started": time.time()}
    (folder / LAUNCH_NAME).write_text(json.dumps(state, indent=2) + "\n")
    return process


def _finish(
    job: _Running, output_dir: Path, threads: int, failed: list[str], log: Callable[[str], None]
) -> None:
    if not close_session(job.spec, output_dir, job.started, job.process.returncode, threads, log):
        failed.append(str(output_dir / job.spec.folder / LOG_NAME))


def close_session(
    spec: RunSpec, output_dir: Path, started: float, returncode: int, threads: int, log: Callable[[str], None]
) -> bool:
    """Add a finished session to the run's ``sessions.json``, and its record if it succeeded.

    Returns:
        Whether the session succeeded (exit code 0).
    """
    folder = output_dir / spec.folder
    seconds = time.time() - started
    sessions_path = folder / SESSIONS_NAME
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    sessions.append({"wall_seconds": round(seconds, 1), "exit_code": returncode})
    sessions_path.write_text(json.dumps(sessions, indent=2) + "\n")
    launch_path = folder / LAUNCH_NAME
    if launch_path.is_file():  # the run's process is gone
        launch_path.write_text(
            json.dumps({**json.loads(launch_path.read_text()), "pid": None}, indent=2) + "\n"
        )
    if returncode != 0:
        log(f"FAILED {spec.folder} (exit {returncode}): see {folder / LOG_NAME}")
        return False
    metrics = json.loads((folder / METRICS_NAME).read_text())
    record = _record(spec, output_dir, metrics, sessions, threads)
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    summary = "  ".join(f"{key} {metrics[key]:.1f}" for key in ("rank1", "mAP") if key in metrics)
    log(f"done  {spec.folder} in {seconds / 60:.1f} min: {summary}")
    return True


def _record(
    spec: RunSpec, output_dir: Path, metrics: dict[str, Any], sessions: list[dict[str, Any]], threads: int
) -> dict[str, Any]:
    config = metrics["config"]
    data = config["data"]
    steps = sum(entry.get("steps", 0) for entry in metrics.get("history", []))
    images = steps * data["num_identities"] * data["num_instances"]
    train_seconds = metrics.get("train_seconds") or 0.0
    return {
        "name": spec.name,
        "seed": spec.seed,
        "arguments": spec.train_arguments(output_dir)[1:],
        "command": "stadb-reid " + " ".join(spec.train_arguments(output_dir)),
        "metrics": {key: value for key, value in metrics.items() if key not in ("history", "config")},
        "config": config,
        "git": _git_commit(),
        "machine": machine_description(threads),
        "wall_seconds": round(sum(s["wall_seconds"] for s in sessions), 1),
        "sessions": len(sessions),
        "train_steps": steps,
        "train_images_per_second": round(images / train_seconds, 2) if train_seconds and steps else None,
    }


def machine_description(threads: int) -> dict[str, Any]:
    """Where a run ran: platform, CPU (model, vector ISA, native bf16), cores, threads, Python, torch."""
    return {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> dict[str, Any] | None:
    # The commit of the package being run (the sweep may run from a worktree pinned to a commit).
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _stop(running: list[_Running], log: Callable[[str], None]) -> None:
    for job in running:
        job.process.send_signal(signal.SIGTERM)
    for job in running:
        job.process.wait()
        log(f"stopped {job.spec.folder} (exit {job.process.returncode}); it resumes at the next sweep")
