"""DukeMTMC-reID: the Market-1501 folders with ``PPPP_cC_fFFFFFFF.jpg`` file names.

Examples:
    >>> DUKEMTMC_NAME_PATTERN.match("0005_c2_f0046985").groups()
    ('0005', '2')
"""

from __future__ import annotations

import os
import re

from stadb_reid.data.datasets.base import ReIDDataset, _resolve_root
from stadb_reid.data.datasets.market1501 import _MARKET_MARKERS, _load_market_layout
from stadb_reid.data.datasets.registry import register_dataset

__all__ = ["DUKEMTMC_NAME_PATTERN", "load_dukemtmc"]

#: DukeMTMC-reID image file name (without extension): groups identity and camera.
DUKEMTMC_NAME_PATTERN = re.compile(r"^(-?\d+)_c(\d+)_f\d+$")


@register_dataset("dukemtmc")
def load_dukemtmc(root: str | os.PathLike[str]) -> ReIDDataset:
    """Read DukeMTMC-reID (Zheng et al., ICCV 2017), which uses the Market-1501 folders.

    Args:
        root: The folder holding ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``,
            or a parent holding it as ``DukeMTMC-reID`` or ``dukemtmc-reid``.

    Returns:
        702 training identities (16,522 images), 2,228 queries and 17,661 gallery images on
        the full dataset. File names are ``PPPP_cC_fFFFFFFF.jpg``.

    Raises:
        DatasetNotFoundError: ``root`` or a split folder is missing.
        EmptyDatasetError: ``root`` or a split folder holds no images.
        FileNameError: An image name is not ``PPPP_cC_fFFFFFFF.jpg``.

    Examples:
        >>> load_dukemtmc("no/such/folder")
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: dukemtmc: dataset root no/such/folder does not exist
    """
    folder = _resolve_root(root, "dukemtmc", _MARKET_MARKERS, ("DukeMTMC-reID", "dukemtmc", "dukemtmcreid"))
    return _load_market_layout(folder, DUKEMTMC_NAME_PATTERN, "0005_c2_f0046985.jpg", "dukemtmc")
