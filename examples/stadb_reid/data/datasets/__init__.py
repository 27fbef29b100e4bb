"""Person re-ID dataset adapters: read the standard folder layouts into :class:`ReIDDataset`.

An adapter only lists files and parses their names (it never opens an image, so building even
MSMT17 takes a fraction of a second); unreadable images are reported when
:class:`stadb_reid.data.loaders.ImageDataset` loads them. Every adapter returns the same structure:

* ``train``: samples with identities relabelled to ``0 .. P-1`` (sorted by original id), ready
  for a classification head;
* ``query`` and ``gallery``: samples with the identities exactly as in the files, so a query and
  its true matches share a label;
* camera ids start at 0 everywhere (Market-1501's ``c1`` is camera 0).

Junk images (identity ``-1``) are dropped; Market-1501/DukeMTMC distractors (identity ``0``) are
kept in the gallery, as in the standard evaluation protocol.

Supported layouts (``root`` may be the dataset folder itself or a parent folder that holds it
under one of its usual names, up to two levels deep, e.g. ``data/market1501/Market-1501-v15.09.15``):

============  =====================================================================================
name          layout
============  =====================================================================================
market1501    ``bounding_box_train/``, ``query/``, ``bounding_box_test/``; ``0002_c1s1_000451_03.jpg``
dukemtmc      same folders; ``0005_c2_f0046985.jpg``
cuhk03        CUHK03-NP: ``cuhk03-np/{labeled,detected}/{bounding_box_train,query,bounding_box_test}``
              with ``0001_c1_1.png`` (767 training / 700 test identities)
msmt17        ``MSMT17_V1/{train,test}/`` or ``MSMT17_V2/{mask_train_v2,mask_test_v2}/`` with
              ``list_{train,val,query,gallery}.txt``
viper         ``cam_a/``, ``cam_b/`` with ``NNN_ANGLE.bmp``; a seeded 316/316 identity split
celeb_reid    ``train/``, ``query/``, ``gallery/`` with ``12_3_0.jpg`` (identity, image number; no
              cameras: see :mod:`~stadb_reid.data.datasets.celeb_reid`)
folder        ``train/<pid>/``, ``query/<pid>/``, ``gallery/<pid>/`` (generic custom data)
synthetic     procedural persons generated into ``root`` (Market-1501 layout), see
              :mod:`stadb_reid.data.synthetic`
============  =====================================================================================

The package holds the records and shared helpers (:mod:`~stadb_reid.data.datasets.base`), the
registry (:mod:`~stadb_reid.data.datasets.registry`) and one module per adapter, which registers
itself when imported; importing this package imports all of them.

Errors are subclasses of :class:`ReIDDataError` that are also ``FileNotFoundError`` or
``ValueError``, and every message names the offending path.

Examples:
    >>> import shutil, tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> for split, names in {
    ...     "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
    ...     "query": ["0003_c1s1_000151_01.jpg"],
    ...     "bounding_box_test": ["0003_c3s1_000176_02.jpg", "0000_c1s1_000001_00.jpg",
    ...                           "-1_c1s1_000002_00.jpg"],
    ... }.items():
    ...     (root / split).mkdir()
    ...     for name in names:
    ...         Image.new("RGB", (8, 16)).save(root / split / name)
    >>> ds = build_dataset("market1501", root)
    >>> ds.num_train_pids, ds.num_train_cams, len(ds.gallery)
    (1, 2, 2)
    >>> [(s.pid, s.camid) for s in ds.train]
    [(0, 0), (0, 1)]
    >>> sorted((s.pid, s.camid) for s in ds.gallery)  # junk -1 dropped, distractor 0 kept
    [(0, 0), (3, 2)]
    >>> shutil.rmtree(root)
"""

from stadb_reid.data.datasets import (  # noqa: F401  (importing an adapter registers it)
    celeb_reid,
    cuhk03,
    dukemtmc,
    folder,
    market1501,
    msmt17,
    synthetic,
    viper,
)
from stadb_reid.data.datasets.base import ReIDDataset, ReIDSample
from stadb_reid.data.datasets.registry import (
    available_datasets,
    build_dataset,
    dataset_from_config,
    register_dataset,
)

__all__ = [
    "ReIDDataset",
    "ReIDSample",
    "available_datasets",
    "build_dataset",
    "dataset_from_config",
    "register_dataset",
]
