"""The gallery index folder: build, resume after a kill, extend, and refuse what does not fit.

A fake extractor with the interface of ``stadb_reid.inference.ReIDExtractor`` stands in for the model
(it never opens the images): it records which images it embedded, so the tests can check that nothing
is embedded twice.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from stadb_reid.errors import GalleryIndexError
from stadb_reid.search import GalleryIndex, build_index
from stadb_reid.search.index import is_index, remove_index
from stadb_reid.search.manifest import MANIFEST_NAME, write_atomically

DIM = 8


def embedding_of(path: object) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    vector = rng.normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


class SimulatedKillError(Exception):
    """Stands for SIGKILL: the run stops in the middle of its work."""


class FakeExtractor:
    def __init__(self, fingerprint: str = "model-a", *, kill_at_call: int | None = None) -> None:
        self.fingerprint = fingerprint
        self.embedding_dim = DIM
        self.kill_at_call = kill_at_call
        self.calls = 0
        self.seen: list[str] = []

    def __call__(self, images, *, normalize=True, as_tensor=False):
        self.calls += 1
        if self.calls == self.kill_at_call:
            raise SimulatedKillError
        self.seen += [str(path) for path in images]
        return np.stack([embedding_of(path) for path in images])


def gallery(count: int, start: int = 0) -> list[Path]:
    return [Path(f"/gallery/{pid:04d}_c{1 + pid % 3}s1_000001_01.jpg") for pid in range(start, start + count)]


def rows(folder: Path) -> np.ndarray:
    return np.concatenate(GalleryIndex.open(folder).embeddings())


def build(folder: Path, images: list[Path], extractor: FakeExtractor, **options):
    options = {"model_path": "/models/a", "chunk_size": 4, "progress": False, **options}
    return build_index(folder, images, extractor, **options)


def test_build_writes_chunks_manifest_and_labels(tmp_path: Path) -> None:
    folder, images = tmp_path / "index", gallery(10)
    summary = build(folder, images, FakeExtractor())
    assert (summary.total, summary.added, summary.embedded, summary.chunks) == (10, 10, 10, 3)
    assert sorted(p.name for p in folder.iterdir()) == [
        "embeddings-00000.npy",
        "embeddings-00001.npy",
        "embeddings-00002.npy",
        MANIFEST_NAME,
    ]
    np.testing.assert_array_equal(rows(folder), np.stack([embedding_of(p) for p in images]))
    index = GalleryIndex.open(folder)
    assert [r.path for r in index.records] == [str(p) for p in images]
    assert [(r.pid, r.camid) for r in index.records[:4]] == [(0, 0), (1, 1), (2, 2), (3, 0)]
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["model"] == {"path": "/models/a", "fingerprint": "model-a"}
    assert manifest["embedding_dim"] == DIM and manifest["flip"] is False


def test_a_killed_run_resumes_at_the_next_missing_chunk(tmp_path: Path) -> None:
    folder, images = tmp_path / "index", gallery(18)  # chunks of 4, 4, 4, 4, 2
    with pytest.raises(SimulatedKillError):
        build(folder, images, FakeExtractor(kill_at_call=3))
    assert sorted(p.name for p in folder.glob("*.npy")) == ["embeddings-00000.npy", "embeddings-00001.npy"]
    assert not list(folder.glob(".*.tmp"))
    with pytest.raises(GalleryIndexError, match=r"unfinished \(3 of 5 chunks missing\).*index again"):
        GalleryIndex.open(folder).embeddings()

    resumed = FakeExtractor()
    summary = build(folder, images, resumed)
    assert resumed.seen == [str(p) for p in images[8:]]  # the finished chunks were not embedded again
    assert resumed.calls == 3
    assert (summary.total, summary.added, summary.embedded) == (18, 0, 10)
    np.testing.assert_array_equal(rows(folder), np.stack([embedding_of(p) for p in images]))


def test_an_image_deleted_before_the_resume_is_left_out(tmp_path: Path) -> None:
    folder, images = tmp_path / "index", gallery(10)
    with pytest.raises(SimulatedKillError):
        build(folder, images, FakeExtractor(kill_at_call=2))
    remaining = images[:6] + images[7:]  # the user removed an unreadable image of an unfinished chunk
    summary = build(folder, remaining, FakeExtractor())
    assert summary.total == 9 and summary.added == 0
    assert [r.path for r in GalleryIndex.open(folder).records] == [str(p) for p in remaining]
    np.testing.assert_array_equal(rows(folder), np.stack([embedding_of(p) for p in remaining]))


def test_adding_images_embeds_only_the_new_ones(tmp_path: Path) -> None:
    folder, old, new = tmp_path / "index", gallery(6), gallery(5, start=100)
    build(folder, old, FakeExtractor())
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    later = FakeExtractor()
    summary = build(folder, [*new[:2], *old, *new[2:], new[0]], later)  # old ones and a duplicate mixed in
    assert later.seen == [str(p) for p in [*new[:2], *new[2:]]]
    assert (summary.total, summary.added, summary.embedded, summary.chunks) == (11, 5, 5, 4)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy") if p.name in stamps} == stamps
    np.testing.assert_array_equal(rows(folder), np.stack([embedding_of(p) for p in [*old, *new]]))
    again = FakeExtractor()
    assert build(folder, old + new, again).embedded == 0 and again.calls == 0


def test_another_model_is_refused_naming_both_folders(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    build(folder, gallery(3), FakeExtractor("model-a"))
    with pytest.raises(GalleryIndexError) as error:
        build_index(folder, gallery(3), FakeExtractor("model-b"), model_path="/models/b", progress=False)
    message = str(error.value)
    assert "\n" not in message
    assert str(folder) in message and "/models/a" in message and "/models/b" in message
    with pytest.raises(GalleryIndexError, match="flip=False, not flip=True"):
        build(folder, gallery(3), FakeExtractor("model-a"), flip=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: "{not json", "damaged gallery index manifest"),
        (lambda m: json.dumps({**m, "format": "other"}), "not a gallery index manifest"),
        (lambda m: json.dumps({**m, "version": 9}), "unsupported gallery index version 9"),
        (lambda m: json.dumps({**m, "embedding_dim": "8"}), "bad or missing '8'"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "flip"}), "bad or missing 'flip'"),
        (lambda m: json.dumps({**m, "chunks": [{"file": "../x.npy", "rows": 3}]}), "chunks do not match"),
        (lambda m: json.dumps({**m, "images": m["images"][:2]}), "chunks do not match"),
    ],
)
def test_a_damaged_manifest_is_named(tmp_path: Path, edit, message: str) -> None:
    folder = tmp_path / "index"
    build(folder, gallery(3), FakeExtractor())
    manifest = folder / MANIFEST_NAME
    manifest.write_text(edit(json.loads(manifest.read_text())))
    with pytest.raises(GalleryIndexError, match=message) as error:
        GalleryIndex.open(folder)
    assert str(manifest) in str(error.value)


def test_a_damaged_chunk_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    build(folder, gallery(6), FakeExtractor())
    np.save(folder / "embeddings-00001.npy", np.zeros((2, DIM + 1), np.float32))
    expected = r"embeddings-00001\.npy: \(2, 9\) float32, expected \(2, 8\)"
    with pytest.raises(GalleryIndexError, match=expected):
        GalleryIndex.open(folder).embeddings()
    np.save(folder / "embeddings-00001.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(GalleryIndexError, match=r"damaged gallery index chunk .*embeddings-00001\.npy"):
        GalleryIndex.open(folder).embeddings()


def test_missing_and_empty_indexes(tmp_path: Path) -> None:
    with pytest.raises(GalleryIndexError, match=f"gallery index not found: {tmp_path / 'nope'}"):
        GalleryIndex.open(tmp_path / "nope")
    missing = f"not a gallery index: {tmp_path / MANIFEST_NAME} is missing"
    with pytest.raises(GalleryIndexError, match=missing):
        GalleryIndex.open(tmp_path)
    empty = tmp_path / "empty"
    build(empty, [], FakeExtractor())
    with pytest.raises(GalleryIndexError, match="holds no images"):
        GalleryIndex.open(empty).embeddings()


def test_remove_index_deletes_only_its_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    build(folder, gallery(5), FakeExtractor())
    (folder / "notes.txt").write_text("mine")
    (folder / "embeddings.npy").write_bytes(b"not a chunk name")
    remove_index(folder)
    assert not is_index(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["embeddings.npy", "notes.txt"]


def test_an_interrupted_atomic_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "file.npy"
    target.write_bytes(b"old")

    def half_then_fail(file) -> None:
        file.write(b"half")
        raise SimulatedKillError

    with pytest.raises(SimulatedKillError):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.npy"]
