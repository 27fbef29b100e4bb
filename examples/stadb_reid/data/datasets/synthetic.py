"""The procedural synthetic dataset as an adapter: generate into ``root`` if needed, then read it.

The generator lives in :mod:`stadb_reid.data.synthetic`; it is imported on first use, so listing
or reading the real datasets does not load the drawing code.
"""

from __future__ import annotations

import os
from typing import Any

from stadb_reid.data.datasets.base import ReIDDataset
from stadb_reid.data.datasets.market1501 import _MARKET_EXAMPLE, MARKET1501_NAME_PATTERN, _load_market_layout
from stadb_reid.data.datasets.registry import _check_options, register_dataset

__all__ = ["load_synthetic"]


@register_dataset("synthetic")
def load_synthetic(root: str | os.PathLike[str], **options: Any) -> ReIDDataset:
    """Generate the procedural dataset into ``root`` if needed, then read it as Market-1501.

    Args:
        root: Target folder; generated when absent or empty, reused when its ``synthetic.json``
            matches the options, regenerated when it was produced with other options (refused if
            the folder holds files the generator did not write).
        **options: Keyword arguments of :func:`stadb_reid.data.synthetic.generate_synthetic_reid`.

    Returns:
        The dataset, named ``"synthetic"``.

    Raises:
        DatasetOptionError: An option the generator does not take.
        ValueError: A generator option is out of range.
        StaleDatasetError: ``root`` holds something the generator cannot reuse or replace.

    Examples:
        >>> load_synthetic("unused", num_people=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetOptionError: dataset 'synthetic' options (data.options): ... 'num_people'
    """
    from stadb_reid.data.synthetic import generate_synthetic_reid

    _check_options(generate_synthetic_reid, "synthetic", root, options)
    folder = generate_synthetic_reid(root, **options)
    return _load_market_layout(folder, MARKET1501_NAME_PATTERN, _MARKET_EXAMPLE, "synthetic")
