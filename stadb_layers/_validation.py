"""Argument and input checks shared by the layers.

The tensor checks run inside ``forward`` and are written in the TorchScript subset, so scripted
modules keep them.
"""

from __future__ import annotations

import torch


def check_feature_map(x: torch.Tensor, name: str, owner: str = "", channels: int | None = None) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating (N, C, H, W) tensor with H, W >= 1.

    Shape checks only (no data is read, so no device synchronisation). An empty batch (N = 0) is allowed.

    Args:
        x: The tensor to check.
        name: Argument name used in the messages, e.g. ``"x"``.
        owner: Class name of the module, used in the channel message.
        channels: The channel count the module was built for; ``None`` accepts any.
    """
    if x.dim() != 4:
        raise ValueError(f"{name} must be a 4-D (N, C, H, W) tensor, got {x.dim()} dimensions")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} must have a non-empty spatial size, got H={x.shape[2]} and W={x.shape[3]}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{owner} was built for channels={channels}, got {name} with {x.shape[1]} channels")


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
