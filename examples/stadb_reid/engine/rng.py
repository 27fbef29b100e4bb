"""Every random number generator's state, so a resumed run draws exactly what it would have drawn."""

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and every CUDA device) global generators.

    The branch selector's private generator travels in the model's ``state_dict`` and the data
    order is a function of ``(seed, epoch)``, so these four are all a checkpoint needs besides them.

    Examples:
        >>> state = capture_rng_state()
        >>> first = torch.rand(3)
        >>> restore_rng_state(state)
        >>> torch.equal(torch.rand(3), first)
        True
    """
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (CUDA states only where CUDA is present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
