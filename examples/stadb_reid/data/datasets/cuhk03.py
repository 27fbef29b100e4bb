"""CUHK03 under the new protocol (CUHK03-NP): two Market-1501-style variants, labelled and detected.

Examples:
    >>> CUHK03_NAME_PATTERN.match("0001_c1_1").groups()
    ('0001', '1')
"""

from __future__ import annotations

import os
import re

from stadb_reid.data.datasets.base import ReIDDataset, _require_dir, _resolve_root
from stadb_reid.data.datasets.market1501 import _load_market_layout
from stadb_reid.data.datasets.registry import register_dataset

__all__ = ["CUHK03_NAME_PATTERN", "load_cuhk03"]

#: CUHK03-NP image file name (without extension): groups identity and camera.
CUHK03_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)_\d+$")


@register_dataset("cuhk03")
def load_cuhk03(root: str | os.PathLike[str], *, labeled: bool = True) -> ReIDDataset:
    """Read CUHK03 under the new protocol (CUHK03-NP, Zhong et al., CVPR 2017).

    Args:
        root: The ``cuhk03-np`` folder (holding ``labeled/`` and ``detected/``, each with
            ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``), or a parent holding it
            as ``cuhk03-np``, ``cuhk03_np`` or ``cuhk03`` (e.g. ``data/cuhk03/cuhk03-np``).
        labeled: Read the manually labelled boxes (``labeled/``) or, if ``False``, the
            detector boxes (``detected/``).

    Returns:
        767 training identities and 700 test identities; 7,368/1,400/5,328 (labeled) or
        7,365/1,400/5,332 (detected) train/query/gallery images. File names are
        ``PPPP_cC_N.png`` with cameras ``c1``/``c2``.

    Raises:
        DatasetNotFoundError: ``root``, the variant folder or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``PPPP_cC_N.png``.

    Examples:
        >>> load_cuhk03("no/such/folder", labeled=False)
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: cuhk03: dataset root no/such/folder does not exist
    """
    name = "cuhk03"
    folder = _resolve_root(
        root, name, ("labeled", "detected"), ("cuhk03-np", "cuhk03_np", "cuhk03np", "cuhk03")
    )
    variant = _require_dir(folder / ("labeled" if labeled else "detected"), name, "variant")
    return _load_market_layout(variant, CUHK03_NAME_PATTERN, "0001_c1_1.png", name)
