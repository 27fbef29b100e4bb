"""A sweep's status at a glance: every run done, running, queued, stopped or failed, with its wall time.

It reads what both launchers leave in each run's folder: ``record.json`` (done), ``sessions.json``
(the wall time and exit code of each finished session) and ``launch.json`` (the launcher, the host
and process of the session in progress, the scheduler job). A process is checked on this host; a
SLURM job through submitit (``squeue``/``sacct``). Nothing is started or changed.
"""

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine.run_folder import LAUNCH_NAME, LOG_NAME, RECORD_NAME, SESSIONS_NAME
from .grid import RunSpec

__all__ = ["STATES", "SUBMITIT_DIR", "RunStatus", "format_status", "run_status"]

#: Where the submitit launcher keeps the jobs' scripts, pickles and scheduler logs.
SUBMITIT_DIR = "submitit"
#: A run's states: finished; training now; waiting (to be submitted, or in the scheduler's queue);
#: interrupted with a checkpoint (the next sweep command continues it); ended with an error.
STATES = ("done", "running", "queued", "stopped", "failed")
_INTERRUPTED_EXIT = 130
_SLURM_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "SUSPENDED", "RESIZING"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT"}


@dataclass(frozen=True)
class RunStatus:
    """One run's state, its wall time so far over all sessions, and a detail (host, job, log line).

    ``active`` tells whether a process or scheduler job holds the run (a queued run that nothing
    has submitted yet is not active).
    """

    folder: str
    state: str
    wall_seconds: float
    detail: str = ""
    active: bool = False


def run_status(output_dir: Path, spec: RunSpec) -> RunStatus:
    """The status of ``spec``'s run in the sweep folder ``output_dir``."""
    folder = output_dir / spec.folder
    record = _json(folder / RECORD_NAME)
    if record is not None:
        return RunStatus(spec.folder, "done", float(record.get("wall_seconds", 0.0)))
    sessions = _json(folder / SESSIONS_NAME) or []
    past = sum(float(session["wall_seconds"]) for session in sessions)
    launch = _json(folder / LAUNCH_NAME)
    if launch is None:
        return RunStatus(spec.folder, "queued", past, "not started")
    running_for = time.time() - float(launch["started"]) if launch.get("started") else 0.0
    job = f"job {launch['job_id']}" if launch.get("job_id") else ""
    if launch.get("cluster") == "slurm":
        state = _slurm_state(output_dir, str(launch["job_id"]))
        if state in _SLURM_RUNNING:
            return RunStatus(
                spec.folder, "running", past + running_for, f"{job} on {launch.get('host')}", True
            )
        if state in _SLURM_QUEUED:
            return RunStatus(spec.folder, "queued", past, f"{job} {state.lower()}", True)
    elif launch.get("host") in (None, socket.gethostname()):
        if launch.get("pid") is not None and _alive(int(launch["pid"])):
            return RunStatus(
                spec.folder, "running", past + running_for, f"pid {launch['pid']} {job}".strip(), True
            )
        if launch.get("cluster") == "local" and _alive(int(launch["job_id"])):  # submitit's controller
            return RunStatus(spec.folder, "queued", past, f"{job} starting", True)
    elif launch.get("pid") is not None:
        return RunStatus(
            spec.folder, "running", past + running_for, f"on {launch['host']} (not checked)", True
        )
    last = _last_line(folder / LOG_NAME)
    if sessions and sessions[-1]["exit_code"] == _INTERRUPTED_EXIT:
        return RunStatus(spec.folder, "stopped", past, last)
    return RunStatus(spec.folder, "failed", past, last)


def format_status(statuses: Sequence[RunStatus]) -> str:
    """A table of ``statuses`` and a count per state."""
    width = max([len("run"), *(len(s.folder) for s in statuses)])
    lines = [f"{'run':<{width}}  {'state':<8}  {'wall':>8}  detail"]
    for status in statuses:
        wall = _duration(status.wall_seconds)
        lines.append(f"{status.folder:<{width}}  {status.state:<8}  {wall:>8}  {status.detail}".rstrip())
    counts = [f"{sum(s.state == state for s in statuses)} {state}" for state in STATES]
    return "\n".join([*lines, ", ".join(counts)]) + "\n"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that its parent has not reaped yet is a zombie: gone for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _last_line(log: Path) -> str:
    try:
        with log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in file.read().decode(errors="replace").splitlines()]
    except OSError:
        return "no log"
    last = next((line for line in reversed(lines) if line), "empty log")
    return last if len(last) <= 200 else last[:197] + "..."


def _slurm_state(output_dir: Path, job_id: str) -> str:
    import submitit  # only a sweep run through submitit on SLURM gets here

    return str(submitit.SlurmJob(output_dir / SUBMITIT_DIR, job_id).state)
