"""The persisted ANN index (search/ann.py) and shards (search/shards.py): against exact search and one index.

Galleries are tiny structured embeddings (identities with noisy views, 16 dimensions) handed to
``build_index`` by a fake embedder, so no network runs except in the command-line test.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from stadb_reid.errors import GalleryIndexError
from stadb_reid.search import GalleryIndex, Shards, build_index, search_shards
from stadb_reid.search.ann import MIN_IVF_ROWS, AnnIndex, plan_ann, update_ann
from stadb_reid.search.exact import exact_search
from stadb_reid.search.faiss_backend import faiss_available

from .test_cli_errors import assert_one_line_error, run_cli
from .test_search import write_model_folder, write_people

pytestmark = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")
DIM = 16


def views(identities: int, per_identity: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """L2-normalised rows: ``per_identity`` noisy views of each identity's centre, identity-major.

    Centres and most of the noise live in an 8-dimensional subspace, as real embeddings concentrate
    near a low-dimensional set; the same ``dim`` gives the same subspace and centres for every seed.
    """
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, 8)))[0].T
    centres = np.random.default_rng(1).normal(size=(identities, 1, 8))
    rng = np.random.default_rng(seed + 2)
    latent = centres + 0.3 * rng.normal(size=(identities, per_identity, 8))
    rows = (latent @ basis + 0.05 * rng.normal(size=(identities, per_identity, dim))).reshape(-1, dim)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class RowsEmbedder:
    """Hands over precomputed rows, looked up by the image's number."""

    def __init__(self, rows: np.ndarray, fingerprint: str = "model-a") -> None:
        self.rows, self.fingerprint, self.embedding_dim = rows, fingerprint, rows.shape[1]

    def __call__(self, images, *, normalize=True, as_tensor=False):
        return self.rows[[int(Path(path).stem.split("_")[-1]) for path in images]]


def paths(start: int, stop: int) -> list[Path]:
    return [Path(f"/gallery/{i % 9000:04d}_c1s1_000001_{i}.jpg") for i in range(start, stop)]


def build(
    folder: Path, rows: np.ndarray, start: int, stop: int, fingerprint: str = "model-a"
) -> GalleryIndex:
    embedder = RowsEmbedder(rows, fingerprint)
    build_index(folder, paths(start, stop), embedder, model_path="/m", chunk_size=4096, progress=False)
    return GalleryIndex.open(folder)


def exact_rows(index_rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return exact_search(queries, index_rows, k)[1]


def test_a_small_gallery_gets_flat_said_so_and_a_large_one_ivf_pq() -> None:
    small = plan_ann("ivf-pq", MIN_IVF_ROWS - 1, 1536)
    assert (small.kind, small.factory) == ("flat", "Flat")
    assert small.note is not None and "too few for ivf-pq" in small.note
    large = plan_ann("ivf-pq", 1_000_000, 1536)
    assert (large.kind, large.factory, large.note) == ("ivf-pq", "IVF4096,PQ384x4fs", None)
    assert plan_ann("ivf-pq", 20_000, 18).factory.endswith(",PQ3x4fs")  # a divisor of the dimension
    assert plan_ann("hnsw", 5, 16).factory == "HNSW32"
    with pytest.raises(ValueError, match="ANN kind must be one of"):
        plan_ann("lsh", 5, 16)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_round_trip_and_extension_without_retraining(kind, tmp_path: Path) -> None:
    rows = views(150, 4)
    queries = views(150, 1, seed=1)[:20]  # other views of the same identities
    folder = tmp_path / "g.index"
    summary = update_ann(build(folder, rows, 0, 400), kind)
    assert summary is not None and (summary.rows, summary.added, summary.trained) == (400, 400, True)
    first_file = json.loads((folder / "ann.json").read_text())["file"]

    summary = update_ann(build(folder, rows, 0, 600))  # the index's own kind, new rows only
    assert summary is not None and (summary.rows, summary.added, summary.trained) == (600, 200, False)
    files = sorted(p.name for p in folder.iterdir() if p.name.startswith(("ann", ".ann")))
    assert first_file not in files and len(files) == 2  # ann.json and the one file it names

    shards = Shards.open([folder])
    assert shards.backend == "ann"
    found = search_shards(shards, queries, paths(0, 20), top_k=10, backend="ann")
    expected_d, expected = exact_search(queries, rows[:600], 10)
    assert [[m.row for m in r.matches] for r in found] == expected.tolist()
    np.testing.assert_allclose([[m.distance for m in r.matches] for r in found], expected_d, atol=1e-5)


def test_ivf_pq_recall_and_extension(tmp_path: Path) -> None:
    rows = views(2000, 6, dim=64)  # 12,000 rows: just over MIN_IVF_ROWS
    folder = tmp_path / "g.index"
    summary = update_ann(build(folder, rows, 0, 11_000), "ivf-pq")
    assert summary is not None and summary.plan.kind == "ivf-pq" and summary.trained
    summary = update_ann(build(folder, rows, 0, 12_000))
    assert summary is not None and (summary.added, summary.trained) == (1000, False)
    queries = views(2000, 1, seed=1, dim=64)[::10]
    found = search_shards(Shards.open([folder]), queries, paths(0, len(queries)), top_k=10, backend="ann")
    expected = exact_rows(rows, queries, 10)
    recall = np.mean(
        [len({m.row for m in r.matches} & set(e)) / 10 for r, e in zip(found, expected, strict=True)]
    )
    assert recall >= 0.95


def test_a_killed_update_leaves_the_previous_ann_index(tmp_path: Path, monkeypatch) -> None:
    import faiss

    rows = views(100, 4)
    folder = tmp_path / "g.index"
    update_ann(build(folder, rows, 0, 300), "flat")
    before = (folder / "ann.json").read_text()
    index = build(folder, rows, 0, 400)

    def killed(index, path):
        Path(path).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", killed)
    with pytest.raises(KeyboardInterrupt):
        update_ann(index)
    monkeypatch.undo()
    assert (folder / "ann.json").read_text() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(
        GalleryIndexError, match="holds 300 rows, the gallery 400: run stadb-reid index again"
    ):
        Shards.open([folder])
    summary = update_ann(index)  # resumes: adds the missing rows
    assert summary is not None and (summary.rows, summary.added) == (400, 100)
    assert Shards.open([folder]).backend == "ann"


def damage(folder: Path, case: str) -> str:
    """Damage the ANN index of ``folder``; the message expected."""
    meta_path = folder / "ann.json"
    meta = json.loads(meta_path.read_text())
    faiss_file = folder / meta["file"]
    if case == "rows":
        meta["rows"] = 299
        meta_path.write_text(json.dumps(meta))
        return "holds 299 rows, the gallery 300"
    if case == "dimension":
        meta["embedding_dim"] = 8
        meta_path.write_text(json.dumps(meta))
        return "does not match the gallery: 8 dimensions, the gallery has 16"
    if case == "fingerprint":
        meta["fingerprint"] = "another"
        meta_path.write_text(json.dumps(meta))
        return "does not match the gallery: built for model another, the gallery's is model-a"
    if case == "truncated":
        faiss_file.write_bytes(faiss_file.read_bytes()[:1000])
        return f"{faiss_file.name} has 1,000 bytes"
    if case == "garbage":
        faiss_file.write_bytes(b"j" * faiss_file.stat().st_size)
        return f"faiss cannot read {faiss_file.name}"
    if case == "faiss file of another gallery":
        meta_path.write_text(json.dumps({**meta, "rows": 200}))
        other = build(folder.parent / "other.index", views(100, 4), 0, 200)
        update_ann(other, "flat")
        other_meta = json.loads((other.folder / "ann.json").read_text())
        faiss_file.write_bytes((other.folder / other_meta["file"]).read_bytes())
        meta_path.write_text(json.dumps({**meta, "bytes": other_meta["bytes"]}))
        return f"{faiss_file.name} holds 200 x 16, ann.json says 300 x 16"
    meta_path.write_text("{not json")
    return "unreadable ann.json"


CASES = ["rows", "dimension", "fingerprint", "truncated", "garbage", "faiss file of another gallery", "json"]


@pytest.mark.parametrize("case", CASES)
def test_a_mismatched_or_damaged_ann_index_is_refused(case, tmp_path: Path) -> None:
    folder = tmp_path / "g.index"
    index = build(folder, views(100, 4), 0, 300)
    update_ann(index, "flat")
    message = damage(folder, case)
    with pytest.raises(GalleryIndexError, match="the ANN index of") as error:
        AnnIndex.open(index)
    assert message in str(error.value) and "\n" not in str(error.value)


def shard_results(results) -> list:
    return [[(m.row, m.path, round(m.distance, 5)) for m in r.matches] for r in results]


@pytest.mark.parametrize("backend", ["exact", "ann"])
@pytest.mark.parametrize("rerank", [False, True])
def test_shards_merge_as_one_index(backend, rerank, tmp_path: Path) -> None:
    rows = views(60, 5)
    rows[250:] = rows[:50]  # rows equal across shards: ties are broken by combined row
    queries = np.concatenate([views(60, 1, seed=1)[:9], rows[:3]])
    one = build(tmp_path / "one", rows, 0, 300)
    parts = [build(tmp_path / "a", rows, 0, 120), build(tmp_path / "b", rows, 120, 200)]
    parts.append(build(tmp_path / "c", rows, 200, 300))
    for index in [one, *parts]:
        update_ann(index, "flat")
    options = {"top_k": 8, "backend": backend, "rerank": rerank, "rerank_pool": 30}
    whole = search_shards(Shards.open([one.folder]), queries, paths(0, 12), **options)
    split = search_shards(Shards.open([p.folder for p in parts]), queries, paths(0, 12), **options)
    assert shard_results(split) == shard_results(whole)


def test_shards_of_different_models_or_the_same_folder_twice_are_refused(tmp_path: Path) -> None:
    rows = views(20, 4)
    a, b = build(tmp_path / "a", rows, 0, 40), build(tmp_path / "b", rows, 40, 80, fingerprint="model-b")
    with pytest.raises(GalleryIndexError, match="were built with different models"):
        Shards.open([a.folder, b.folder])
    with pytest.raises(GalleryIndexError, match="is given twice"):
        Shards.open([a.folder, a.folder])
    with pytest.raises(GalleryIndexError, match="has no ANN index: build one with stadb-reid index --ann"):
        Shards.open([a.folder], ann=True)


def test_index_ann_then_search_several_indexes(tmp_path: Path, monkeypatch, capsys) -> None:
    model = write_model_folder(tmp_path / "model", seed=0)
    write_people(tmp_path / "g1", [(pid, 0) for pid in range(3)])
    write_people(tmp_path / "g2", [(pid, 1) for pid in range(3)])
    for name in ("g1", "g2"):
        command = ["index", "--model", str(model), "--images", str(tmp_path / name)]
        code, out, err = run_cli(
            [*command, "--out", str(tmp_path / f"{name}.index"), "--ann", "ivf-pq", "--no-progress"],
            monkeypatch,
            capsys,
        )
        assert code == 0, err
        assert "ANN index flat (Flat): 3 rows, trained and built" in out
        assert "note: 3 images are too few for ivf-pq (it needs 10,000): built flat (exact)" in out
    search = ["search", "--index", str(tmp_path / "g1.index"), "--index", str(tmp_path / "g2.index")]
    search += ["--query", str(tmp_path / "g2"), "--out-json", str(tmp_path / "r.json")]
    code, out, err = run_cli([*search, "--out-html", str(tmp_path / "r.html")], monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["backend"], report["ann"], report["gallery_size"]) == ("ann", "Flat", 6)
    assert [q["matches"][0]["row"] for q in report["queries"]] == [3, 4, 5]  # each finds itself in g2

    meta = json.loads((tmp_path / "g2.index" / "ann.json").read_text())
    (tmp_path / "g2.index" / "ann.json").write_text(json.dumps({**meta, "embedding_dim": 7}))
    code, _, err = run_cli([*search, "--overwrite"], monkeypatch, capsys)
    assert_one_line_error(code, err, "does not match the gallery: 7 dimensions, the gallery has 1536")
