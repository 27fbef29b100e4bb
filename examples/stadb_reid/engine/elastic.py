"""Elastic restarts under torchrun: restarted workers continue their own job's checkpoint.

``torchrun --max-restarts=N`` starts every worker again, with the same command line, after one of
them fails (a crashed process; a lost node once it or a replacement rejoins the rendezvous), and
SLURM starts a requeued job's script again. torchrun expects the script to continue from its latest
checkpoint then. ``stadb-reid train`` does so without ``--resume`` when the checkpoint in its output
folder was written by this torchrun job, which it recognises by the rendezvous id torchrun gives
every worker (``TORCHELASTIC_RUN_ID``: ``--rdzv-id``, or a fresh UUID for a single-node torchrun).
Restart counts cannot decide it: an agent that restarts its workers because another node joined
counts no restart. A checkpoint of another job is never continued unasked, so with an id that
several jobs share (``none``, torchrun's multi-node default) a restart cannot resume: give torchrun
a unique ``--rdzv-id`` (``$SLURM_JOB_ID``) or pass ``--resume``.

Restarted workers must also meet in a fresh store. By default (torch 2.5 and later) torchrun's agent
hosts the store that the workers' process group is set up through, and keeps it across restarts, so
a restarted rank can read the address its peer published in the attempt before: gloo then connects
to a dead process (refused) or waits for a connection that never comes, and the job hangs
(pytorch/pytorch#135712; restart counts differ between nodes, so they cannot scope the keys).
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` in torchrun's environment makes every attempt set up a
new store (c10d rendezvous); the trainer refuses ``--max-restarts`` without it.
"""

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .checkpoint import load_latest_checkpoint

__all__ = ["check_restart_store", "continues_own_checkpoint", "torchrun_run_id"]

_AGENT_STORE = "TORCHELASTIC_USE_AGENT_STORE"
_MAX_RESTARTS = "TORCHELASTIC_MAX_RESTARTS"
_RUN_ID = "TORCHELASTIC_RUN_ID"
_SHARED_RUN_ID = "none"


def torchrun_run_id() -> str | None:
    """The torchrun job's rendezvous id, ``None`` outside torchrun."""
    return os.environ.get(_RUN_ID)


def check_restart_store() -> None:
    """Refuse a torchrun job whose restarted workers would set up their group in the earlier store.

    Raises:
        ConfigError: Several workers, ``--max-restarts`` above 0, and the workers use the agent's
            store (``TORCHELASTIC_USE_AGENT_STORE``), which outlives an attempt.
    """
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several and int(os.environ.get(_MAX_RESTARTS, "0")) > 0 and os.environ.get(_AGENT_STORE) == "True":
        raise ConfigError(
            "torchrun --max-restarts keeps the store of the first attempt, where restarted workers can "
            "read their peers' old addresses and hang (pytorch/pytorch#135712): start torchrun with "
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 and --rdzv-backend=c10d (or --standalone)"
        )


def continues_own_checkpoint(checkpoint_path: Path, log: Callable[[str], None]) -> bool:
    """Whether ``checkpoint_path`` was written by this torchrun job (an earlier attempt of it).

    Args:
        checkpoint_path: The run's checkpoint (its ``*.prev.pt`` copy is used if it is damaged).
        log: Receives a warning when restarts could not resume (a shared rendezvous id), and a line
            saying that the run continues when it does.
    """
    run_id = torchrun_run_id()
    if run_id is None or run_id == _SHARED_RUN_ID:
        if int(os.environ.get(_MAX_RESTARTS, "0")) > 0:
            log(
                f"warning: torchrun's rendezvous id is {run_id!r}, which other jobs share: an elastic "
                "restart cannot tell this run's checkpoint from an earlier one and will not resume it; "
                "give torchrun a unique --rdzv-id (e.g. $SLURM_JOB_ID) or pass --resume"
            )
        return False
    try:
        saved = load_latest_checkpoint(checkpoint_path, log=log, require=("torchrun_run_id",))
    except CheckpointError:
        return False  # the trainer then names the unusable files
    if saved is None or saved[0]["torchrun_run_id"] != run_id:
        return False
    log(f"this torchrun job wrote {checkpoint_path}: continuing it")
    return True
