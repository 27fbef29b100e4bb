"""The Celeb-reID adapter on a tiny tree in the dataset's published layout, and its config."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stadb_reid.config import load_config
from stadb_reid.data import ReIDSample, build_dataset, dataset_from_config
from stadb_reid.data.datasets.celeb_reid import load_celeb_reid
from stadb_reid.errors import (
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
    FileNameError,
    ReIDDataError,
)
from stadb_reid.evaluation import rank_metrics

# Identity 7 is in query and gallery; image numbers 1x and 2x differ in their first digit.
CELEB_TREE = {
    "train": ["3_1_0.jpg", "3_12_0.jpg", "5_2_1.jpg", "-1_1_0.jpg"],
    "query": ["7_1_0.jpg", "9_2_0.jpg"],
    "gallery": ["7_13_0.jpg", "7_2_0.jpg", "9_21_1.jpg", "9_3_0.jpg", "-1_4_0.jpg"],
}


def make_celeb(root: Path) -> Path:
    for split, names in CELEB_TREE.items():
        (root / split).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (8, 16), (10, 20, 30)).save(root / split / name)
    return root


def pid_cams(samples: tuple[ReIDSample, ...]) -> list[tuple[int, int]]:
    return sorted((s.pid, s.camid) for s in samples)


def test_layout_relabels_train_drops_junk_and_reads_the_digit(tmp_path: Path) -> None:
    root = make_celeb(tmp_path / "Celeb-reID")
    for where in (root, tmp_path):  # the dataset folder or its parent
        ds = build_dataset("celeb_reid", where)
        assert ds.name == "celeb_reid"
        assert pid_cams(ds.train) == [(0, 1), (0, 1), (1, 2)]
        assert pid_cams(ds.query) == [(7, 1), (9, 2)]
        assert pid_cams(ds.gallery) == [(7, 1), (7, 2), (9, 2), (9, 3)]
    plain = load_celeb_reid(root, camera_filter=False)
    assert {s.camid for s in plain.query} == {0} and {s.camid for s in plain.gallery} == {1}
    assert len(plain.gallery) == 4 and plain.num_train_pids == 2


def test_camera_filter_is_the_datasets_own_evaluation(tmp_path: Path) -> None:
    """With the filter, a gallery image of the query's identity and digit is left out of its ranking.

    Query 7_1 has two true matches, 7_13 (digit 1: excluded) and 7_2; query 9_2 has 9_21 (excluded)
    and 9_3. The gallery's order by distance puts the excluded match first for both queries.
    """
    root = make_celeb(tmp_path)
    order = ["7_13_0.jpg", "9_21_1.jpg", "7_2_0.jpg", "9_3_0.jpg"]  # gallery's rank for both queries
    for camera_filter, expected_cmc in ((True, [0.0, 0.5, 1.0]), (False, [0.5, 1.0, 1.0])):
        ds = load_celeb_reid(root, camera_filter=camera_filter)
        gallery = sorted(ds.gallery, key=lambda s: order.index(s.path.name))
        query = sorted(ds.query, key=lambda s: s.pid)
        distances = np.tile(np.arange(len(gallery), dtype=np.float32), (len(query), 1))
        metrics = rank_metrics(
            distances,
            [s.pid for s in query],
            [s.pid for s in gallery],
            [s.camid for s in query],
            [s.camid for s in gallery],
            max_rank=3,
        )
        # Filtered: query 7 finds 7_2 second, query 9 finds 9_3 third; unfiltered: query 7 finds
        # 7_13 first, query 9 finds 9_21 second.
        assert metrics.cmc.tolist() == pytest.approx(expected_cmc)


def test_config_builds_the_adapter(tmp_path: Path) -> None:
    config = load_config(["celeb_reid"], {"data.root": str(make_celeb(tmp_path))}, recipe="paper")
    assert config.data.dataset == "celeb_reid" and config.data.height == 384
    assert dataset_from_config(config.data).num_train_pids == 2


def test_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(missing))):
        load_celeb_reid(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyDatasetError, match=re.escape(str(empty))):
        load_celeb_reid(empty)
    root = make_celeb(tmp_path / "data")
    bad = root / "query" / "IMG_1.jpg"
    Image.new("RGB", (8, 16)).save(bad)
    with pytest.raises(FileNameError, match=re.escape(str(bad))) as info:
        load_celeb_reid(root)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ReIDDataError)
    bad.unlink()
    for image in (root / "gallery").iterdir():
        image.unlink()
    with pytest.raises(EmptyDatasetError, match=re.escape(str(root / "gallery"))):
        load_celeb_reid(root)
    (root / "gallery").rmdir()
    with pytest.raises(DatasetNotFoundError, match="gallery split folder"):
        load_celeb_reid(root)
    with pytest.raises(DatasetOptionError, match="camera_filter"):
        build_dataset("celeb_reid", root, camera_filter="no")
    with pytest.raises(DatasetOptionError, match="unexpected"):
        build_dataset("celeb_reid", root, cameras=False)


def test_only_junk_split_is_empty(tmp_path: Path) -> None:
    root = make_celeb(tmp_path)
    for image in (root / "query").iterdir():
        image.unlink()
    Image.new("RGB", (8, 16)).save(root / "query" / "-1_1_0.jpg")
    with pytest.raises(EmptyDatasetError, match="only junk"):
        load_celeb_reid(root)
