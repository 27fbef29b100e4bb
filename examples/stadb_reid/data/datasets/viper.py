"""VIPeR: two cameras, one image of every person in each, split into halves by a seed.

Examples:
    >>> _split_order([1, 2, 3, 4], seed=0) == _split_order([1, 2, 3, 4], seed=0)
    True
"""

from __future__ import annotations

import os
import random
import re

from stadb_reid.data.datasets.base import (
    ReIDDataset,
    ReIDSample,
    _list_images,
    _relabel,
    _require_dir,
    _resolve_root,
)
from stadb_reid.data.datasets.registry import register_dataset
from stadb_reid.errors import FileNameError

__all__ = ["load_viper"]

_VIPER_RE = re.compile(r"^(\d+)_(\d+)$")


def _split_order(items: list[int], seed: int) -> list[int]:
    """Fisher-Yates shuffle driven by ``random.Random.random``, whose stream Python guarantees."""
    rng = random.Random(seed)
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


@register_dataset("viper")
def load_viper(
    root: str | os.PathLike[str], *, split_seed: int = 0, num_train_ids: int | None = None
) -> ReIDDataset:
    """Read VIPeR (Gray et al., PETS 2007) with a seeded random half/half identity split.

    Args:
        root: The folder holding ``cam_a/`` and ``cam_b/`` (file names ``NNN_ANGLE.bmp``, the
            same ``NNN`` being the same person), or a parent holding it as ``VIPeR``.
        split_seed: Seed of the identity split; the same seed gives the same split on every
            platform. The usual protocol averages 10 splits (seeds 0..9).
        num_train_ids: Training identities; default half of them (316 of 632).

    Returns:
        Training samples: both cameras of the training identities (632 images). Query: the
        ``cam_a`` images of the test identities (316), gallery: their ``cam_b`` images (316).
        ``cam_a`` is camera 0 and ``cam_b`` camera 1.

    Raises:
        DatasetNotFoundError: ``root``, ``cam_a/`` or ``cam_b/`` is missing.
        EmptyDatasetError: ``root`` or a camera folder holds no images.
        FileNameError: An image name is not ``NNN_ANGLE.bmp``.
        ValueError: ``num_train_ids`` leaves no training or no test identity.

    Examples:
        >>> load_viper("no/such/folder", split_seed=3)
        Traceback (most recent call last):
        ...
        stadb_reid.errors.DatasetNotFoundError: viper: dataset root no/such/folder does not exist
    """
    name = "viper"
    folder = _resolve_root(root, name, ("cam_a", "cam_b"), ("VIPeR", "viper"))
    by_cam: list[list[ReIDSample]] = []
    for camid, cam in enumerate(("cam_a", "cam_b")):
        samples = []
        for path in _list_images(_require_dir(folder / cam, name, "camera"), name):
            match = _VIPER_RE.match(path.stem)
            if match is None:
                raise FileNameError(
                    f"viper: cannot parse the identity from file name {path} "
                    "(expected a name like '000_45.bmp')",
                    path,
                )
            samples.append(ReIDSample(path, int(match.group(1)), camid))
        by_cam.append(samples)
    pids = sorted({s.pid for samples in by_cam for s in samples})
    n_train = len(pids) // 2 if num_train_ids is None else num_train_ids
    # The range depends on the data, and the message names the folder: no generic check fits.
    if isinstance(n_train, bool) or not isinstance(n_train, int) or not 1 <= n_train < len(pids):
        raise ValueError(
            f"num_train_ids must be an integer in [1, {len(pids) - 1}] for {folder}, got {num_train_ids!r}"
        )
    train_ids = set(_split_order(pids, split_seed)[:n_train])
    train = tuple(s for samples in by_cam for s in samples if s.pid in train_ids)
    query = tuple(s for s in by_cam[0] if s.pid not in train_ids)
    gallery = tuple(s for s in by_cam[1] if s.pid not in train_ids)
    return ReIDDataset(name, _relabel(sorted(train, key=lambda s: (s.pid, s.camid))), query, gallery)
