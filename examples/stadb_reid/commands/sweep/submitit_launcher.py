"""Running a sweep's training runs as scheduler jobs through submitit: SLURM, or submitit's local executor.

One scheduler job per run. The job runs the same ``stadb-reid train --resume`` child process in the
same run folder as the local launcher (``torchrun --standalone --nproc_per_node=G`` when a run has
``G > 1`` GPUs), and writes the same ``sessions.json`` and ``record.json``, so the report cannot tell
the launchers apart. A job is a :class:`submitit.helpers.Checkpointable`: when the scheduler
preempts it or its time runs out, submitit signals it (``USR2``), and :meth:`TrainJob.checkpoint`
stops the trainer with SIGTERM (it saves a checkpoint after the step in flight) and hands submitit
the same job to requeue, which continues from that checkpoint through ``--resume``.

Without SLURM (no ``sbatch``), or with ``cluster="local"``, submitit runs the jobs on this machine.
This module needs the optional ``submitit`` package (``pip install 'stadb-layers[cluster]'``).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from ...engine.run_folder import LAUNCH_NAME, LOG_NAME
from ...errors import ConfigError
from .grid import RunSpec
from .runner import SweepFailedError, close_session, read_record, start_training
from .status import SUBMITIT_DIR, run_status

__all__ = ["SUBMITIT_DIR", "SchedulerOptions", "TrainJob", "run_sweep_submitit"]

_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SchedulerOptions:
    """A job's resources, in submitit's parameter names (``slurm_*`` apply on SLURM only).

    Attributes:
        cluster: ``"slurm"``, ``"local"`` or ``None`` (SLURM when ``sbatch`` is found, else local).
        partition: SLURM partition (``--partition``).
        account: SLURM account to charge (``--account``).
        gpus_per_node: GPUs of each run; more than one trains under ``torchrun``.
        cpus_per_task: CPU cores of each run (also its torch threads).
        timeout_min: Time limit of each job in minutes; a run needing more is requeued and resumes.
        mem_gb: Memory of each job, ``None`` for the cluster's default.
        slurm_args: More ``#SBATCH`` settings, e.g. ``{"qos": "high", "constraint": "a100"}``.
    """

    cluster: str | None = None
    partition: str | None = None
    account: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 4
    timeout_min: int = 24 * 60
    mem_gb: float | None = None
    slurm_args: tuple[tuple[str, str], ...] = ()

    def parameters(self, name: str) -> dict[str, Any]:
        """``executor.update_parameters`` keywords for a job named ``name``."""
        if self.gpus_per_node < 0 or self.cpus_per_task < 1 or self.timeout_min < 1:
            raise ConfigError("--gpus-per-node must be >= 0, --cpus-per-task and --timeout-min >= 1")
        parameters: dict[str, Any] = {
            "name": name,
            "timeout_min": self.timeout_min,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_task": self.cpus_per_task,
            "tasks_per_node": 1,
            "nodes": 1,
            "stderr_to_stdout": True,
        }
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        slurm = {"partition": self.partition, "account": self.account}
        parameters.update({f"slurm_{key}": value for key, value in slurm.items() if value is not None})
        if self.slurm_args:
            parameters["slurm_additional_parameters"] = dict(self.slurm_args)
        return parameters


class TrainJob(Checkpointable):
    """One run as a requeueable submitit job (a :class:`submitit.helpers.Checkpointable`).

    Args:
        spec: The run.
        output_dir: The sweep's folder.
        program: The command that starts ``stadb-reid``.
        threads: Torch threads of the trainer.
    """

    def __init__(self, spec: RunSpec, output_dir: Path, program: Sequence[str], threads: int) -> None:
        self.spec, self.output_dir, self.program, self.threads = spec, output_dir, list(program), threads
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_process": None}  # a requeued job starts its own process

    def __call__(self) -> dict[str, Any]:
        """Train (or continue) the run and write its record; raises if the trainer fails."""
        environment = {
            **os.environ,
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
        }
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        self._started = time.time()
        launch = {"launcher": "submitit", "cluster": os.environ.get("SUBMITIT_EXECUTOR"), "job_id": job_id}
        self._process = start_training(self.spec, self.output_dir, self.program, environment, launch)
        returncode = self._process.wait()
        self._process = None
        if not close_session(self.spec, self.output_dir, self._started, returncode, self.threads, print):
            log = self.output_dir / self.spec.folder / LOG_NAME
            raise SweepFailedError(f"{self.spec.folder} failed (exit {returncode}): see {log}")
        record = read_record(self.output_dir, self.spec)
        assert record is not None
        return record

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Stop the trainer so that it saves a checkpoint, and requeue this job to continue from it."""
        process = self._process
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:  # not Popen.wait(): the interrupted __call__ holds its lock inside Popen.wait()
                _, status = os.waitpid(process.pid, 0)
                returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # __call__ reaped it just before the signal
                returncode = process.returncode if process.returncode is not None else 1
            close_session(self.spec, self.output_dir, self._started, returncode, self.threads, print)
            self._process = None
        return DelayedSubmission(self)


def run_sweep_submitit(
    specs: Sequence[RunSpec],
    output_dir: Path,
    options: SchedulerOptions,
    *,
    name: str,
    log: Callable[[str], None] = print,
    program: Sequence[str] = (sys.executable, "-m", "stadb_reid"),
) -> None:
    """Submit one job per unfinished run (not those queued or running already) and wait for them all.

    The jobs' submitit files (scripts, pickles, scheduler logs) go to ``output_dir/submitit``.

    Raises:
        SweepFailedError: A job failed (the others still ran); its log is named.
    """
    executor = submitit.AutoExecutor(folder=output_dir / SUBMITIT_DIR, cluster=options.cluster)
    executor.update_parameters(**options.parameters(name))
    if options.gpus_per_node > 1:
        program = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={options.gpus_per_node}", *program[1:]]  # fmt: skip
    pending = [spec for spec in specs if read_record(output_dir, spec) is None]
    in_flight = [spec for spec in pending if run_status(output_dir, spec).active]
    log(
        f"sweep: {len(specs) - len(pending)} of {len(specs)} runs finished, {len(in_flight)} in flight; "
        f"submitting {len(pending) - len(in_flight)} jobs ({executor.cluster})"
    )
    jobs = []
    for spec in pending:
        if spec in in_flight:
            continue
        job = executor.submit(TrainJob(spec, output_dir, program, options.cpus_per_task))
        _note_submission(output_dir, spec, job.job_id, executor.cluster)
        log(f"submitted {spec.folder}: job {job.job_id}")
        jobs.append((spec, job))
    failed = []
    for spec, job in jobs:
        while not job.done():
            time.sleep(_POLL_SECONDS)
        if job.exception() is not None:
            failed.append(f"{spec.folder} (job {job.job_id}, {job.paths.stdout})")
    if failed:
        raise SweepFailedError(f"{len(failed)} run(s) failed: {', '.join(failed)}")


def _note_submission(output_dir: Path, spec: RunSpec, job_id: str, cluster: str) -> None:
    folder = output_dir / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    noted = folder / LAUNCH_NAME
    if noted.is_file() and json.loads(noted.read_text()).get("job_id") == job_id:
        return  # the job started already and wrote its own
    launch = {
        "launcher": "submitit",
        "cluster": cluster,
        "job_id": job_id,
        "host": socket.gethostname() if cluster == "local" else None,
        "pid": None,
        "started": None,
        "submitted": time.time(),
    }
    noted.write_text(json.dumps(launch, indent=2) + "\n")
