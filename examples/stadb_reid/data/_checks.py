"""The one integer check of the data package that :mod:`stadb_layers._validation` lacks.

``check_positive_int`` covers ``>= 1``; the data package also needs ``>= 0`` (seeds, ranks,
epochs, worker counts) and other lower bounds (at least 2 cameras, 16-pixel images), and the
PK sampler takes NumPy integers (identity counts computed from arrays).
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_int_at_least"]


def check_int_at_least(value: int, name: str, low: int) -> int:
    """Return ``value`` as an ``int``; raise ``ValueError`` naming ``name`` unless an integer >= ``low``.

    Python and NumPy integers are accepted; ``bool`` is not.

    Args:
        value: The value to check.
        name: Argument name used in the message.
        low: Smallest allowed value.

    Returns:
        ``int(value)``.

    Raises:
        ValueError: ``value`` is not an integer, or is below ``low``.

    Examples:
        >>> check_int_at_least(np.int64(3), "seed", 0)
        3
        >>> check_int_at_least(-1, "seed", 0)
        Traceback (most recent call last):
        ...
        ValueError: seed must be an integer >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
