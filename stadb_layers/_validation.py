"""Argument and input checks shared by the layers.

The tensor checks run inside ``forward`` and are written in the TorchScript subset, so scripted
modules keep them.
"""

from __future__ import annotations

import torch


def check_feature_map(x: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a 4-D floating tensor laid out as (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) tensor, got {x.dim()} dimensions")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def check_in_interval(
    value: float, name: str, low: float, high: float, *, low_closed: bool, high_closed: bool
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` if it is outside the interval."""
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    if not (above and below):
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return float(value)


def check_positive_int(value: int, name: str) -> int:
    """Return ``value``, or raise ``ValueError`` naming ``name`` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_odd_kernel_size(value: int, name: str = "kernel_size") -> int:
    """Return ``value``, or raise ``ValueError`` unless it is a positive odd integer ("same" padding)."""
    check_positive_int(value, name)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd so the output keeps the input size, got {value}")
    return value
