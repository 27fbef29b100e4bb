"""Array types and the input checks shared by the evaluation functions.

Every message names the argument it is about, so that a caller sees which input to fix.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from stadb_layers.checks import check_positive_int

__all__ = [
    "ArrayLike",
    "FloatArray",
    "IntArray",
    "check_chunking",
    "check_distmat",
    "check_labels",
    "check_max_rank",
    "to_numpy",
]

ArrayLike = npt.ArrayLike | torch.Tensor
"""Anything :func:`numpy.asarray` accepts, or a :class:`torch.Tensor` on any device."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def to_numpy(x: ArrayLike) -> np.ndarray[Any, Any]:
    """``x`` as a numpy array; a tensor is detached and copied to the CPU, half floats become float32.

    Examples:
        >>> import torch
        >>> to_numpy(torch.tensor([1.5], dtype=torch.float16)).dtype
        dtype('float32')
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.dtype in (torch.float16, torch.bfloat16):
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def check_labels(x: ArrayLike, name: str, length: int, length_of: str) -> IntArray:
    """``x`` as a 1-D int64 array of ``length`` entries, one per ``length_of``.

    Examples:
        >>> check_labels([3, 1], "q_pids", 2, "query").tolist()
        [3, 1]
    """
    a = to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if a.shape[0] != length:
        raise ValueError(f"{name} must have one entry per {length_of} ({length}), got {a.shape[0]}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def check_distmat(distmat: ArrayLike) -> np.ndarray[Any, Any]:
    """``distmat`` as a non-empty 2-D float32 or float64 array; the conversions keep every tie.

    Examples:
        >>> check_distmat([[1, 2]]).dtype
        dtype('float64')
    """
    d = to_numpy(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be a 2-D (num_query, num_gallery) matrix, got shape {d.shape}")
    if d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat must have at least one query and one gallery entry, got shape {d.shape}")
    if d.dtype == np.float16:
        d = d.astype(np.float32)  # exact: the ranking and every tie are preserved
    elif d.dtype.kind in "iu":
        d = d.astype(np.float64)  # exact for magnitudes below 2**53
    elif d.dtype not in (np.float32, np.float64):
        raise ValueError(f"distmat must hold real numbers (float or int), got dtype {d.dtype}")
    return d


def check_max_rank(max_rank: int, num_gallery: int) -> int:
    """``max_rank``, clipped with a warning to ``num_gallery``.

    Examples:
        >>> check_max_rank(5, 10)
        5
    """
    max_rank = check_positive_int(max_rank, "max_rank")
    if num_gallery < max_rank:
        warnings.warn(
            f"max_rank={max_rank} exceeds the number of gallery entries ({num_gallery}); "
            f"clipping it to {num_gallery}",
            UserWarning,
            stacklevel=3,
        )
        return num_gallery
    return max_rank


def check_chunking(chunk_size: int, num_workers: int) -> None:
    """Raise ``ValueError`` unless both are positive integers.

    Examples:
        >>> check_chunking(256, 1)
    """
    check_positive_int(chunk_size, "chunk_size")
    check_positive_int(num_workers, "num_workers")
