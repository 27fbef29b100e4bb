"""Tests of stadb_reid.data: adapters, errors, synthetic generator, PK sampler, transforms, loaders."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from stadb_reid.config.schema import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from stadb_reid.data import (
    PKSampler,
    ReIDDataset,
    ReIDSample,
    available_datasets,
    build_dataset,
    build_test_loaders,
    build_test_transform,
    build_train_loader,
    build_train_transform,
    dataset_from_config,
    generate_synthetic_reid,
    register_dataset,
)
from stadb_reid.data.datasets import registry as registry_module
from stadb_reid.data.datasets.market1501 import load_market1501
from stadb_reid.data.loaders import ImageDataset, SeededBatchSampler
from stadb_reid.data.synthetic.metadata import METADATA_FILE
from stadb_reid.errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    EmptyDatasetError,
    FileNameError,
    ReIDDataError,
    StaleDatasetError,
    UnreadableImageError,
)

VIPER_ROOT = (Path(__file__).parents[2] / ".." / "shared" / "datasets" / "VIPeR").resolve()

SMALL_SYNTHETIC: dict[str, Any] = {
    "num_train_identities": 6,
    "num_test_identities": 3,
    "num_cameras": 3,
    "images_per_identity_per_camera": 2,
    "num_distractors": 2,
    "height": 32,
    "width": 16,
}


# ------------------------------------------------------------------------------------ helpers
def write_images(folder: Path, names: list[str], size: tuple[int, int] = (8, 16)) -> None:
    """Write tiny images (format from the suffix) named ``names`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (120, 60, 30))
    for name in names:
        image.save(folder / name)


def pid_cams(samples: tuple[ReIDSample, ...]) -> list[tuple[int, int]]:
    return sorted((s.pid, s.camid) for s in samples)


def make_market(root: Path) -> Path:
    write_images(
        root / "bounding_box_train",
        ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c6s2_001001_02.jpg"],
    )
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")  # ignored
    write_images(root / "query", ["0003_c1s1_000151_01.jpg", "0005_c2s1_000200_01.jpg"])
    write_images(
        root / "bounding_box_test",
        [
            "0003_c4s1_000176_02.jpg",
            "0005_c1s1_000190_01.jpg",
            "0000_c1s1_000001_00.jpg",  # distractor: kept
            "-1_c1s1_000002_00.jpg",  # junk: dropped
            "-1_c3s1_000003_00.jpg",
        ],
    )
    return root


def make_msmt(root: Path, *, v2: bool = False) -> Path:
    train_dir, test_dir = ("mask_train_v2", "mask_test_v2") if v2 else ("train", "test")
    train = {
        "0000/0000_000_01_0303morning_0015_0.jpg": 0,
        "0000/0000_001_05_0303noon_0035_1.jpg": 0,
        "0002/0002_003_15_0303afternoon_0100_0.jpg": 2,
    }
    val = {"0001/0001_010_07_0304morning_0400_0.jpg": 1}
    query = {"0000/0000_000_03_0303morning_0015_0.jpg": 0}
    gallery = {"0000/0000_002_04_0303noon_0020_0.jpg": 0, "0004/0004_002_02_0303noon_0020_1.jpg": 4}
    for folder, listing in ((train_dir, train), (train_dir, val), (test_dir, query), (test_dir, gallery)):
        for rel in listing:
            write_images((root / folder / rel).parent, [Path(rel).name])
    for name, listing in (("train", train), ("val", val), ("query", query), ("gallery", gallery)):
        lines = "".join(f"{rel} {pid}\n" for rel, pid in listing.items())
        (root / f"list_{name}.txt").write_text(lines)
    return root


def make_viper(root: Path, num_ids: int = 10) -> Path:
    write_images(root / "cam_a", [f"{i:03d}_{(i * 45) % 180}.bmp" for i in range(num_ids)], (6, 12))
    write_images(root / "cam_b", [f"{i:03d}_{(i * 90) % 180}.bmp" for i in range(num_ids)], (6, 12))
    return root


def make_cuhk03(root: Path) -> Path:
    for variant, suffix in (("labeled", "1"), ("detected", "2")):
        base = root / "cuhk03-np" / variant
        write_images(
            base / "bounding_box_train", [f"0001_c1_{suffix}.png", f"0001_c2_{suffix}.png", "0004_c1_1.png"]
        )
        write_images(base / "query", [f"0010_c1_{suffix}.png"])
        write_images(base / "bounding_box_test", [f"0010_c2_{suffix}.png", "0011_c2_5.png"])
    # One extra detected training image tells the two variants apart.
    write_images(root / "cuhk03-np" / "detected" / "bounding_box_train", ["0006_c2_3.png"])
    return root


# ------------------------------------------------------------------------------------ adapters
def test_market1501_relabels_train_drops_junk_keeps_distractors(tmp_path: Path) -> None:
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    for where in (root, tmp_path):  # the dataset folder or its parent
        ds = build_dataset("market1501", where)
        assert ds.name == "market1501"
        assert pid_cams(ds.train) == [(0, 0), (0, 1), (1, 5)]
        assert ds.num_train_pids == 2 and ds.num_train_cams == 3
        assert pid_cams(ds.query) == [(3, 0), (5, 1)]
        assert pid_cams(ds.gallery) == [(0, 0), (3, 3), (5, 0)]
        assert all(s.path.parent == root / "bounding_box_test" for s in ds.gallery)
    assert "train   |    2 |      3 |       3" in ds.summary()


def test_dukemtmc(tmp_path: Path) -> None:
    root = tmp_path / "dukemtmc-reid" / "DukeMTMC-reID"  # torchreid's nesting
    write_images(
        root / "bounding_box_train", ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0003_c8_f0000001.jpg"]
    )
    write_images(root / "query", ["0005_c2_f0046985.jpg"])
    write_images(root / "bounding_box_test", ["0005_c3_f0043116.jpg", "0000_c1_f0000001.jpg"])
    ds = build_dataset("dukemtmc", tmp_path)
    assert pid_cams(ds.train) == [(0, 1), (0, 4), (1, 7)]
    assert pid_cams(ds.query) == [(5, 1)]
    assert pid_cams(ds.gallery) == [(0, 0), (5, 2)]
    write_images(root / "query", ["0002_c1s1_000451_03.jpg"])  # a Market-1501 name
    with pytest.raises(FileNameError, match=re.escape("0002_c1s1_000451_03.jpg")):
        build_dataset("dukemtmc", root)


@pytest.mark.parametrize("labeled", [True, False])
def test_cuhk03_np_labeled_and_detected(tmp_path: Path, labeled: bool) -> None:
    make_cuhk03(tmp_path)
    for where in (tmp_path, tmp_path / "cuhk03-np"):
        ds = build_dataset("cuhk03", where, labeled=labeled)
        variant = "labeled" if labeled else "detected"
        assert all(variant in s.path.parts for s in (*ds.train, *ds.query, *ds.gallery))
        assert ds.num_train_pids == (2 if labeled else 3)
        assert ds.num_train_cams == 2
        assert pid_cams(ds.query) == [(10, 0)]
        assert pid_cams(ds.gallery) == [(10, 1), (11, 1)]


def test_cuhk03_missing_variant_names_path(tmp_path: Path) -> None:
    make_cuhk03(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "cuhk03-np" / "detected")
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(tmp_path / "cuhk03-np" / "detected"))):
        build_dataset("cuhk03", tmp_path, labeled=False)


@pytest.mark.parametrize("v2", [False, True])
def test_msmt17_lists_cameras_and_val(tmp_path: Path, v2: bool) -> None:
    root = make_msmt(tmp_path / ("MSMT17_V2" if v2 else "MSMT17_V1"), v2=v2)
    ds = build_dataset("msmt17", tmp_path)
    # train = list_train + list_val, pids 0, 1, 2 -> 0, 1, 2; camera = third field - 1
    assert pid_cams(ds.train) == [(0, 0), (0, 4), (1, 6), (2, 14)]
    assert pid_cams(ds.query) == [(0, 2)]
    assert pid_cams(ds.gallery) == [(0, 3), (4, 1)]
    image_dir = root / ("mask_train_v2" if v2 else "train")
    assert {s.path for s in ds.train} <= set(image_dir.rglob("*.jpg"))
    no_val = build_dataset("msmt17", root, use_val=False)
    assert no_val.num_train_pids == 2 and len(no_val.train) == 3


def test_msmt17_errors_name_the_file(tmp_path: Path) -> None:
    root = make_msmt(tmp_path)
    (root / "list_gallery.txt").write_text("0000/0000_002_04_0303noon_0020_0.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"line 1 of .*list_gallery\.txt"):
        build_dataset("msmt17", root)
    (root / "list_gallery.txt").write_text("0000/badname.jpg 0\n")
    with pytest.raises(FileNameError, match=re.escape("badname.jpg")):
        build_dataset("msmt17", root)
    (root / "list_gallery.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"list_gallery\.txt"):
        build_dataset("msmt17", root)
    (root / "test").rename(root / "elsewhere")
    with pytest.raises(DatasetNotFoundError, match="mask_test_v2"):
        build_dataset("msmt17", root)


def test_viper_split_sizes_and_determinism(tmp_path: Path) -> None:
    root = make_viper(tmp_path / "VIPeR")
    ds = build_dataset("viper", tmp_path, split_seed=3)
    assert ds.num_train_pids == 5 and len(ds.train) == 10 and ds.num_train_cams == 2
    assert len(ds.query) == 5 and len(ds.gallery) == 5
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery}
    train_files = {s.path.stem.split("_")[0] for s in ds.train}
    assert not train_files & {f"{s.pid:03d}" for s in ds.query}
    assert build_dataset("viper", root, split_seed=3) == ds
    splits = {frozenset(s.pid for s in build_dataset("viper", root, split_seed=k).query) for k in range(6)}
    assert len(splits) > 1
    assert len(build_dataset("viper", root, num_train_ids=2).query) == 8
    with pytest.raises(ValueError, match="num_train_ids"):
        build_dataset("viper", root, num_train_ids=10)


@pytest.mark.skipif(not VIPER_ROOT.is_dir(), reason="shared VIPeR copy not available")
def test_real_viper() -> None:
    ds = build_dataset("viper", VIPER_ROOT, split_seed=0)
    test_ids = {s.pid for s in ds.query}
    assert ds.num_train_pids == 316 and len(ds.train) == 632
    assert len(test_ids) == 316 and len(ds.query) == 316 and len(ds.gallery) == 316
    assert test_ids == {s.pid for s in ds.gallery}
    assert ds.num_train_pids + len(test_ids) == 632
    assert build_dataset("viper", VIPER_ROOT, split_seed=0).query == ds.query
    assert build_dataset("viper", VIPER_ROOT, split_seed=1).query != ds.query
    assert ImageDataset(ds.query[:1])[0][0].shape == (3, 128, 48)


def test_folder_layout_cameras_and_defaults(tmp_path: Path) -> None:
    write_images(tmp_path / "train" / "12", ["a_c2_001.jpg", "b.png"])
    write_images(tmp_path / "train" / "0040", ["x_c3.jpg"])
    write_images(tmp_path / "query" / "7", ["q.jpg", "c4_q.jpg"])
    write_images(tmp_path / "gallery" / "7", ["g.jpg", "g_c1_2.jpg"])
    write_images(tmp_path / "gallery" / "8", ["arc1.jpg"])  # "arc1" is not a camera token
    (tmp_path / "gallery" / "notes.txt").write_text("ignored")
    ds = build_dataset("folder", tmp_path)
    assert pid_cams(ds.train) == [(0, 0), (0, 1), (1, 2)]
    assert pid_cams(ds.query) == [(7, 0), (7, 3)]
    assert pid_cams(ds.gallery) == [(7, 0), (7, 1), (8, 1)]


def test_folder_format_errors(tmp_path: Path) -> None:
    for split in ("train", "query", "gallery"):
        write_images(tmp_path / split / "1", ["a.jpg"])
    write_images(tmp_path / "query" / "bob", ["a.jpg"])
    with pytest.raises(DatasetFormatError, match=re.escape(str(tmp_path / "query" / "bob"))):
        build_dataset("folder", tmp_path)
    (tmp_path / "query" / "bob" / "a.jpg").unlink()
    (tmp_path / "query" / "bob").rmdir()
    write_images(tmp_path / "gallery", ["loose.jpg"])
    with pytest.raises(DatasetFormatError, match=re.escape("loose.jpg")):
        build_dataset("folder", tmp_path)


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("name", ["market1501", "dukemtmc", "cuhk03", "msmt17", "viper", "folder"])
def test_missing_and_empty_root(tmp_path: Path, name: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(missing))) as info:
        build_dataset(name, missing)
    assert isinstance(info.value, FileNotFoundError) and info.value.path == missing
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyDatasetError, match=re.escape(str(empty))) as empty_info:
        build_dataset(name, empty)
    assert isinstance(empty_info.value, ValueError)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DatasetNotFoundError, match="not a directory"):
        build_dataset(name, a_file)


def test_market_split_errors_name_the_path(tmp_path: Path) -> None:
    root = make_market(tmp_path)
    query = root / "query"
    for f in query.iterdir():
        f.unlink()
    with pytest.raises(EmptyDatasetError, match=rf"no images .* in {re.escape(str(query))}"):
        load_market1501(root)
    query.rmdir()
    with pytest.raises(DatasetNotFoundError, match=re.escape(f"query split folder {query} is missing")):
        load_market1501(root)
    write_images(query, ["0003_c1s1_000151_01.jpg", "IMG_1234.jpg"])
    with pytest.raises(FileNameError, match=re.escape(str(query / "IMG_1234.jpg"))) as info:
        load_market1501(root)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ReIDDataError)
    (query / "IMG_1234.jpg").rename(query / "0003_c0s1_000151_01.jpg")
    with pytest.raises(FileNameError, match="camera numbers start at 1"):
        load_market1501(root)


def test_only_junk_split_is_empty(tmp_path: Path) -> None:
    root = make_market(tmp_path)
    for f in (root / "query").iterdir():
        f.unlink()
    write_images(root / "query", ["-1_c1s1_000001_00.jpg"])
    with pytest.raises(EmptyDatasetError, match="only junk"):
        load_market1501(root)


def test_unreadable_image_names_the_path(tmp_path: Path) -> None:
    root = make_market(tmp_path)
    broken = root / "query" / "0003_c1s1_000151_01.jpg"
    broken.write_bytes(b"\xff\xd8 truncated jpeg")
    ds = load_market1501(root)  # construction does not open images
    dataset = ImageDataset(ds.query)
    with pytest.raises(UnreadableImageError, match=re.escape(str(broken))):
        dataset[[s.path for s in ds.query].index(broken)]
    missing = ReIDSample(root / "gone.jpg", 1, 0)
    with pytest.raises(UnreadableImageError, match=re.escape("gone.jpg")):
        ImageDataset([missing])[0]
    # The error type and the path survive the trip from a worker process.
    query_loader, _ = build_test_loaders(ds, height=16, width=8, batch_size=2, num_workers=1)
    with pytest.raises(UnreadableImageError, match=re.escape(str(broken))):
        list(query_loader)


def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry_module, "_REGISTRY", dict(registry_module._REGISTRY)
    )  # undo the registration
    # A subset: the docs' custom-dataset example registers one more name when it runs first.
    assert {
        "cuhk03",
        "dukemtmc",
        "folder",
        "market1501",
        "msmt17",
        "synthetic",
        "viper",
    } <= set(available_datasets())
    assert available_datasets() == sorted(available_datasets())
    with pytest.raises(ValueError, match=r"unknown dataset 'market'.*market1501"):
        build_dataset("market", tmp_path)
    make_market(tmp_path)
    assert build_dataset("Market1501", tmp_path).num_train_pids == 2
    with pytest.raises(TypeError):
        build_dataset("market1501", tmp_path, labeled=True)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("viper", load_market1501)
    register_dataset("my_market", load_market1501)
    assert build_dataset("my_market", tmp_path).num_train_pids == 2

    @register_dataset("decorated")
    def load_decorated(root: Path) -> ReIDDataset:
        return load_market1501(root)

    assert load_decorated.__name__ == "load_decorated"  # the decorator hands the function back
    assert build_dataset("DECORATED", tmp_path).num_train_pids == 2
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("decorated")(load_market1501)
    register_dataset("decorated", overwrite=True)(load_market1501)
    config = DataConfig(dataset="my_market", root=str(tmp_path))
    assert dataset_from_config(config).num_train_pids == 2


# ------------------------------------------------------------------------------------ synthetic
def test_synthetic_layout_determinism_and_metadata(tmp_path: Path) -> None:
    a = generate_synthetic_reid(tmp_path / "a", **SMALL_SYNTHETIC, seed=5)
    b = generate_synthetic_reid(tmp_path / "b", **SMALL_SYNTHETIC, seed=5)
    c = generate_synthetic_reid(tmp_path / "c", **SMALL_SYNTHETIC, seed=6)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files_a)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary folder is gone

    ds = load_market1501(a)  # the plain Market-1501 adapter reads it
    synthetic = build_dataset("synthetic", a, **SMALL_SYNTHETIC, seed=5)
    assert (synthetic.name, synthetic.train, synthetic.query, synthetic.gallery) == (
        "synthetic",
        ds.train,
        ds.query,
        ds.gallery,
    )
    assert ds.num_train_pids == 6 and len(ds.train) == 6 * 3 * 2 and ds.num_train_cams == 3
    assert len(ds.query) == 3 * 3  # one query per test identity and camera
    assert Counter(s.pid for s in ds.gallery)[0] == 2  # distractors
    assert len(ds.gallery) == 3 * 3 * 1 + 2
    assert {s.pid for s in ds.query} == {s.pid for s in ds.gallery} - {0}
    assert not {s.pid for s in ds.query} & set(range(1, 7))
    with Image.open(ds.train[0].path) as image:
        assert image.size == (16, 32) and image.mode == "RGB"

    metadata = json.loads((a / METADATA_FILE).read_text())
    assert metadata["params"] == {**SMALL_SYNTHETIC, "seed": 5, "difficulty": 1.0}
    assert metadata["counts"] == {"train": 36, "query": 9, "gallery": 11}
    assert len(metadata["cameras"]) == 3


def test_synthetic_cameras_differ() -> None:
    from stadb_reid.data.synthetic import render_person

    means = np.array(
        [
            [
                np.asarray(render_person(i, cam, height=64, width=32, image_seed=i)).mean((0, 1))
                for i in range(12)
            ]
            for cam in range(4)
        ]
    ).mean(1)  # (camera, RGB) average colour
    gaps = [np.abs(means[i] - means[j]).max() for i in range(4) for j in range(i + 1, 4)]
    assert min(gaps) > 4, means  # every pair of cameras differs in illumination/colour cast
    neutral = np.array(
        [
            [
                np.asarray(render_person(i, cam, height=64, width=32, image_seed=i, difficulty=0.0)).mean(
                    (0, 1)
                )
                for i in range(12)
            ]
            for cam in range(4)
        ]
    ).mean(1)
    neutral_gaps = [np.abs(neutral[i] - neutral[j]).max() for i in range(4) for j in range(i + 1, 4)]
    assert sum(neutral_gaps) < sum(gaps)  # difficulty 0 removes the colour casts
    one = np.asarray(render_person(1, 0), np.float32)
    assert np.abs(one - np.asarray(render_person(1, 0, image_seed=1), np.float32)).mean() > 5  # poses differ


def test_synthetic_reuse_regenerate_and_refuse(tmp_path: Path) -> None:
    root = generate_synthetic_reid(tmp_path / "syn", **SMALL_SYNTHETIC)
    marker = root / METADATA_FILE
    stamp = marker.stat().st_mtime_ns
    assert generate_synthetic_reid(root, **SMALL_SYNTHETIC) == root
    assert marker.stat().st_mtime_ns == stamp  # reused, not rewritten
    changed = {**SMALL_SYNTHETIC, "num_test_identities": 2}
    with pytest.raises(StaleDatasetError, match=re.escape(str(marker))):
        generate_synthetic_reid(root, **changed, regenerate=False)
    ds = build_dataset("synthetic", root, **changed)  # regenerates by default
    assert len({s.pid for s in ds.query}) == 2
    assert json.loads(marker.read_text())["params"]["num_test_identities"] == 2

    foreign = tmp_path / "photos"
    write_images(foreign, ["holiday.jpg"])
    with pytest.raises(StaleDatasetError, match=re.escape(f"{foreign} is not empty")):
        generate_synthetic_reid(foreign, **SMALL_SYNTHETIC)
    (root / "mine.txt").write_text("user file")
    with pytest.raises(StaleDatasetError, match=re.escape("mine.txt")):
        generate_synthetic_reid(root, **SMALL_SYNTHETIC)
    with pytest.raises(ValueError, match="images_per_identity_per_camera"):
        generate_synthetic_reid(tmp_path / "x", images_per_identity_per_camera=1)
    with pytest.raises(ValueError, match="num_cameras"):
        generate_synthetic_reid(tmp_path / "x", num_cameras=1)
    with pytest.raises(ValueError, match="difficulty"):
        generate_synthetic_reid(tmp_path / "x", difficulty=2.5)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------ sampler
@st.composite
def sampler_cases(draw: st.DrawFn) -> tuple[list[int], int, int, int, int]:
    counts = draw(st.lists(st.integers(1, 9), min_size=1, max_size=30))
    pid_values = draw(
        st.lists(st.integers(-5, 1000), min_size=len(counts), max_size=len(counts), unique=True)
    )
    pids = [pid for pid, n in zip(pid_values, counts, strict=True) for _ in range(n)]
    order = draw(st.permutations(range(len(pids))))
    return (
        [pids[i] for i in order],
        draw(st.integers(1, 6)),
        draw(st.integers(1, 5)),
        draw(st.integers(1, 3)),
        draw(st.integers(0, 2**31)),
    )


@settings(max_examples=120, deadline=None)
@given(case=sampler_cases(), epoch=st.integers(0, 5))
def test_pk_sampler_properties(case: tuple[list[int], int, int, int, int], epoch: int) -> None:
    pids, p, k, world, seed = case
    try:
        samplers = [PKSampler(pids, p, k, seed=seed, rank=r, world_size=world) for r in range(world)]
    except ValueError as exc:
        # Only when there are fewer identities than one batch per rank needs.
        assert "identities" in str(exc) and len(set(pids)) < p * world
        return
    assert len(set(pids)) >= p * world
    by_pid = Counter(pids)
    epoch_ids: list[set[int]] = []
    used: Counter[int] = Counter()
    lengths = set()
    for sampler in samplers:
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        lengths.add(len(batches))
        ids: set[int] = set()
        for batch in batches:
            assert len(batch) == p * k == sampler.batch_size
            assert all(0 <= i < len(pids) for i in batch)
            counts = Counter(pids[i] for i in batch)
            assert len(counts) == p and set(counts.values()) == {k}
            assert [pids[i] for i in batch] == [pids[batch[j * k]] for j in range(p) for _ in range(k)]
            ids |= set(counts)
            used.update(batch)
        epoch_ids.append(ids)
    assert len(lengths) == 1  # the same number of batches on every rank
    if world == 1:  # maximal: one more batch would need more groups than the identities have
        groups = [max(1, n // k) for n in by_pid.values()]
        b = len(samplers[0]) + 1
        assert sum(min(g, b) for g in groups) < p * b
    for i in range(world):
        for j in range(i + 1, world):
            assert not epoch_ids[i] & epoch_ids[j]  # ranks get disjoint identities
    for index, times in used.items():
        if by_pid[pids[index]] >= k:
            assert times == 1  # no image twice in an epoch unless its identity has < K images
    # Determinism: a fresh sampler at the same seed and epoch replays the epoch.
    again = PKSampler(pids, p, k, seed=seed, rank=world - 1, world_size=world)
    again.set_epoch(epoch)
    samplers[-1].set_epoch(epoch)
    assert list(again) == list(samplers[-1])


def test_pk_sampler_length_is_maximal_and_epochs_differ() -> None:
    # 10 identities with 8 images and K = 4: 20 groups -> 5 batches of 4 identities.
    pids = [i // 8 for i in range(80)]
    sampler = PKSampler(pids, num_identities=4, num_instances=4, seed=1)
    assert len(sampler) == 5
    epoch0 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(80))  # every image once
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    sampler.set_epoch(0)
    assert list(sampler) == epoch0
    # Identities with fewer than K images are topped up with replacement.
    small = PKSampler([0, 1, 1, 2, 2, 2], num_identities=3, num_instances=4)
    (batch,) = list(small)
    assert Counter(batch)[0] == 4 and set(batch) == set(range(6))
    # Two ranks: 5 identities each, 2 groups each -> 10 groups / 4 per batch, minus the boundary slack.
    ranks = [PKSampler(pids, 4, 4, seed=1, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_identities": 0}, "num_identities"),
        ({"num_instances": 0}, "num_instances"),
        ({"num_identities": 2.5}, "num_identities"),
        ({"seed": -1}, "seed"),
        ({"world_size": 0}, "world_size"),
        ({"rank": -1}, "rank"),
        ({"rank": 2, "world_size": 2}, "rank"),
        ({"num_identities": 4}, "at least 4 identities, got 3"),
        ({"num_identities": 2, "world_size": 2}, "at least 4 identities"),
    ],
)
def test_pk_sampler_argument_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PKSampler([0, 0, 1, 1, 2, 2], **kwargs)


def test_pk_sampler_epoch_and_empty_errors() -> None:
    with pytest.raises(ValueError, match="epoch"):
        PKSampler([0, 1], num_identities=1, num_instances=1).set_epoch(-1)
    with pytest.raises(ValueError, match="empty"):
        PKSampler([])


# ------------------------------------------------------------------------------------ transforms
def test_transforms_shape_dtype_and_normalisation() -> None:
    torch.manual_seed(0)
    white = Image.new("RGB", (64, 128), (255, 255, 255))
    x = build_test_transform(48, 24)(white)
    assert x.shape == (3, 48, 24) and x.dtype == torch.float32
    expected = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(x.mean((1, 2)), torch.tensor(expected))

    left_red = Image.new("RGB", (64, 128), (0, 0, 255))
    left_red.paste((255, 0, 0), (0, 0, 32, 128))
    flipped = build_train_transform(32, 16, flip_prob=1.0, padding=0, erasing_prob=0.0)(left_red)
    assert flipped.shape == (3, 32, 16)
    assert flipped[0, :, -1].mean() > flipped[0, :, 0].mean()  # red moved to the right
    erased = build_train_transform(32, 16, flip_prob=0.0, padding=0, erasing_prob=1.0)(white)
    assert (erased == 0).any() and (erased > 2).any()  # erased to 0 (the mean) after normalising
    padded = [
        build_train_transform(32, 16, flip_prob=0.0, padding=8, erasing_prob=0.0)(white) for _ in range(20)
    ]
    black = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]).view(3, 1, 1)
    assert any(torch.isclose(t, black.expand_as(t)).all(0).any() for t in padded)  # padding shows up


def test_transform_argument_errors() -> None:
    with pytest.raises(ValueError, match="height"):
        build_train_transform(0, 16)
    with pytest.raises(ValueError, match="width"):
        build_test_transform(16, -2)
    with pytest.raises(ValueError, match="flip_prob"):
        build_train_transform(flip_prob=1.5)
    with pytest.raises(ValueError, match="erasing_prob"):
        build_train_transform(erasing_prob=-0.1)
    with pytest.raises(ValueError, match="padding"):
        build_train_transform(padding=-1)


# ------------------------------------------------------------------------------------ loaders
def test_loaders_with_workers(tmp_path: Path) -> None:
    ds = build_dataset("synthetic", tmp_path / "syn", **SMALL_SYNTHETIC)
    loader = build_train_loader(
        ds, height=32, width=16, num_identities=3, num_instances=2, num_workers=2, seed=0
    )
    assert isinstance(loader.batch_sampler, SeededBatchSampler) and loader.persistent_workers
    assert loader.pk_sampler is loader.batch_sampler.batches
    seen = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        assert loader.pk_sampler.epoch == epoch
        for images, pids, camids in loader:
            assert images.shape == (6, 3, 32, 16) and images.dtype == torch.float32
            assert pids.dtype == torch.int64 and camids.max() < 3
            assert Counter(pids.tolist()) == Counter({p: 2 for p in set(pids.tolist())})
            seen.append(pids)
    assert len(seen) == 2 * len(loader)
    assert torch.cat(seen).max() < ds.num_train_pids

    query_loader, gallery_loader = build_test_loaders(ds, height=32, width=16, batch_size=4, num_workers=2)
    q_pids = torch.cat([p for _, p, _ in query_loader])
    assert q_pids.tolist() == [s.pid for s in ds.query]  # split order kept
    assert sum(len(x) for x, _, _ in gallery_loader) == len(ds.gallery)
    with pytest.raises(ValueError, match="num_workers"):
        build_test_loaders(ds, num_workers=-1)
    with pytest.raises(ValueError, match="batch_size"):
        build_test_loaders(ds, batch_size=0)


def test_augmentations_do_not_depend_on_workers_or_resuming_mid_epoch(tmp_path: Path) -> None:
    ds = build_dataset("synthetic", tmp_path / "syn", **SMALL_SYNTHETIC)

    def epoch_batches(num_workers: int, start_batch: int = 0) -> list[torch.Tensor]:
        loader = build_train_loader(
            ds, height=32, width=16, num_identities=3, num_instances=2, num_workers=num_workers, seed=5
        )
        loader.set_epoch(3, start_batch=start_batch)
        return [images for images, _, _ in loader]

    in_process = epoch_batches(0)
    assert len(in_process) >= 2
    repeated = epoch_batches(0)
    assert all(torch.equal(a, b) for a, b in zip(repeated, in_process, strict=True)), "same epoch, same draws"
    for got, expected in zip(epoch_batches(2), in_process, strict=True):
        assert torch.equal(got, expected)
    for got, expected in zip(epoch_batches(0, start_batch=1), in_process[1:], strict=True):
        assert torch.equal(got, expected)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    epoch_batches(0)
    assert torch.equal(torch.get_rng_state(), before), "loading leaves the global generator alone"


def test_seeded_batches_item_seeds_differ_and_start_batch_is_checked() -> None:
    pk = PKSampler([i // 4 for i in range(32)], num_identities=2, num_instances=2, seed=0)
    batches = SeededBatchSampler(pk, seed=1)
    batches.set_epoch(1)
    seeds = [item_seed for batch in batches for _, item_seed in batch]
    assert len(set(seeds)) == len(seeds) == len(pk) * 4
    batches.set_epoch(2)
    assert not set(seeds) & {item_seed for batch in batches for _, item_seed in batch}
    batches.set_epoch(1, start_batch=len(pk))
    assert len(batches) == 0 and list(batches) == []
    with pytest.raises(ValueError, match="start_batch"):
        batches.set_epoch(1, start_batch=len(pk) + 1)
