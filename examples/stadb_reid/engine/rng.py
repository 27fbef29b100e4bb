"""Every random number generator's state, so a resumed run draws exactly what it would have drawn.

The state is made of tensors and plain Python data only, so a checkpoint holding it loads with
``torch.load(weights_only=True)``, which cannot run code.
"""

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and every CUDA device) global generators.

    The branch selector's private generator travels in the model's ``state_dict`` and the data
    order is a function of ``(seed, epoch)``, so these four are all a checkpoint needs besides them.
    Python's state is a tuple of ints (and a float); NumPy's MT19937 key, an array a restricted
    unpickler refuses, is stored as an int64 tensor next to its position and cached Gaussian.

    Examples:
        >>> state = capture_rng_state()
        >>> first = torch.rand(3), np.random.rand(), random.random()
        >>> restore_rng_state(state)
        >>> torch.equal(torch.rand(3), first[0]), (np.random.rand(), random.random()) == first[1:]
        (True, True)
    """
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (CUDA states only where CUDA is present)."""
    numpy_state = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
