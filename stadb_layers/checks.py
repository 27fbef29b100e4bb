"""Argument and input checks: one-line ``ValueError`` messages that name the offending argument.

Every layer of the library checks its arguments and inputs with these functions, and code built on the
layers can use them too (the ``stadb-reid`` trainer does), so a bad value gives the same wording
everywhere:

* integers: :func:`check_int` (optional bounds), :func:`check_positive_int`,
  :func:`check_non_negative_int` and :func:`check_odd_kernel_size`. Python and NumPy integers are
  accepted (``bool`` is not) and returned as a Python ``int``;
* real numbers: :func:`check_in_interval` and :func:`check_probability` (``[0, 1]``), returned as a
  ``float``; NaN lies in no interval;
* other values: :func:`check_bool` and :func:`check_choice`;
* tensors: :func:`check_feature_map`.

:func:`check_feature_map` runs inside ``forward`` and :func:`check_in_interval` inside the scripted
forward of the triplet loss, so both are written in the TorchScript subset and scripted modules keep
them.

Examples:
    >>> from stadb_layers.checks import check_positive_int, check_probability
    >>> check_positive_int(3, "channels")
    3
    >>> check_probability(1.5, "rho")
    Traceback (most recent call last):
    ...
    ValueError: rho must lie in [0.0, 1.0], got 1.5
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_feature_map",
    "check_in_interval",
    "check_int",
    "check_non_negative_int",
    "check_odd_kernel_size",
    "check_positive_int",
    "check_probability",
]


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
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` if it is outside the interval.

    NaN lies in no interval. TorchScript-compatible (under TorchScript the bounds in the message are
    printed in its float format, e.g. ``0.`` for ``0.0``).

    Examples:
        >>> check_in_interval(0.5, "alpha", 0.0, 1.0, low_closed=False, high_closed=True)
        0.5
        >>> check_in_interval(0.0, "alpha", 0.0, 1.0, low_closed=False, high_closed=True)
        Traceback (most recent call last):
        ...
        ValueError: alpha must lie in (0.0, 1.0], got 0.0
    """
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    if not (above and below):
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return float(value)


def check_bool(value: bool, name: str) -> bool:
    """Return ``value``, or raise ``ValueError`` naming ``name`` unless it is a ``bool`` (not "false")."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value``, or raise ``ValueError`` naming ``name`` unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_probability(value: float, name: str) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` unless it lies in ``[0, 1]``.

    Examples:
        >>> check_probability(1, "flip_prob")
        1.0
        >>> check_probability(1.5, "flip_prob")
        Traceback (most recent call last):
        ...
        ValueError: flip_prob must lie in [0.0, 1.0], got 1.5
    """
    return check_in_interval(value, name, 0.0, 1.0, low_closed=True, high_closed=True)


def _checked_int(value: int, name: str, low: int | None, high: int | None, requirement: str) -> int:
    """``int(value)`` if it is a Python or NumPy integer (not ``bool``) in ``[low, high]``."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {requirement}, got {value!r}")
    return int(value)


def check_int(value: int, name: str, low: int | None = None, high: int | None = None) -> int:
    """Return ``int(value)``, or raise ``ValueError`` naming ``name`` unless an integer in ``[low, high]``.

    Either bound may be ``None`` (unbounded). Python and NumPy integers are accepted, ``bool`` is not.

    Examples:
        >>> check_int(2, "eval_branch", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: eval_branch must be an integer in [0, 1], got 2
        >>> check_int(-1, "seed", low=0)
        Traceback (most recent call last):
        ...
        ValueError: seed must be an integer >= 0, got -1
    """
    if low is not None and high is not None:
        requirement = f"an integer in [{low}, {high}]"
    elif low is not None:
        requirement = f"an integer >= {low}"
    elif high is not None:
        requirement = f"an integer <= {high}"
    else:
        requirement = "an integer"
    return _checked_int(value, name, low, high, requirement)


def check_positive_int(value: int, name: str) -> int:
    """Return ``int(value)``, or raise ``ValueError`` naming ``name`` unless it is an integer >= 1."""
    return _checked_int(value, name, 1, None, "a positive integer")


def check_non_negative_int(value: int, name: str) -> int:
    """Return ``int(value)``, or raise ``ValueError`` naming ``name`` unless it is an integer >= 0."""
    return _checked_int(value, name, 0, None, "a non-negative integer")


def check_odd_kernel_size(value: int, name: str = "kernel_size") -> int:
    """Return ``int(value)``, or raise ``ValueError`` unless it is a positive odd integer ("same" padding)."""
    value = check_positive_int(value, name)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd so the output keeps the input size, got {value}")
    return value
