"""Search over an index: exact top-k against brute force and faiss, re-ranking, the JSON report, the CLI.

The command-line tests at the end export a small untrained model folder and run ``stadb-reid index``
and ``stadb-reid search`` through :func:`stadb_reid.cli.main`, as the console script does.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stadb_reid.commands import index_gallery
from stadb_reid.config import config_to_dict, load_config
from stadb_reid.config.schema import IMAGENET_MEAN, IMAGENET_STD
from stadb_reid.data.synthetic import render_person
from stadb_reid.errors import ConfigError
from stadb_reid.evaluation import k_reciprocal_rerank_features
from stadb_reid.model import STADBNet
from stadb_reid.model.folder import model_folder_config, save_model_folder
from stadb_reid.search import GalleryIndex, format_results, search_index
from stadb_reid.search.exact import SearchMetric, exact_search
from stadb_reid.search.faiss_backend import faiss_available, faiss_search
from stadb_reid.search.query import rerank_nearest, results_to_json

from .test_cli_errors import assert_one_line_error, run_cli
from .test_index import FakeExtractor, build, embedding_of, gallery

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")


def brute_force(queries: np.ndarray, rows: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    q, g = queries.astype(np.float64), rows.astype(np.float64)
    if metric == "cosine":
        unit_q, unit_g = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (q, g))
        d = 1.0 - unit_q @ unit_g.T
    else:
        d = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def random_problem(seed: int = 0, gallery_size: int = 500, dim: int = 16, queries: int = 7):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(gallery_size, dim)).astype(np.float32)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    return q, g


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_search_equals_brute_force_over_chunks_and_blocks(metric: SearchMetric) -> None:
    q, g = random_problem()
    chunks = [g[:100], g[100:137], g[137:]]
    distances, rows = exact_search(q, chunks, 10, metric=metric, block_rows=50)
    expected_d, expected_rows = brute_force(q, g, 10, metric)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(distances, expected_d, atol=2e-5)
    assert distances.dtype == np.float32 and rows.dtype == np.int64


def test_ties_are_broken_by_gallery_row_and_k_is_capped() -> None:
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    distances, rows = exact_search(np.array([[1.0, 0.0]]), [g[:1], g[1:]], 10, block_rows=1)
    assert rows.tolist() == [[0, 2, 3, 1]]
    assert distances[0, :3].tolist() == [0.0, 0.0, 0.0]


def test_bad_arguments_are_value_errors() -> None:
    q, g = random_problem(queries=1)
    with pytest.raises(ValueError, match="metric must be 'euclidean' or 'cosine'"):
        exact_search(q, g, 3, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same dimension"):
        exact_search(q, g[:, :3], 3)
    with pytest.raises(ValueError, match="the gallery is empty"):
        exact_search(q, [], 3)


@needs_faiss
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_faiss_returns_the_exact_results(metric: SearchMetric) -> None:
    q, g = random_problem(seed=1, gallery_size=3000, dim=32, queries=25)
    chunks = [g[:1000], g[1000:]]
    exact_d, exact_rows = exact_search(q, chunks, 15, metric=metric)
    faiss_d, faiss_rows = faiss_search(q, chunks, 15, metric=metric)
    np.testing.assert_array_equal(faiss_rows, exact_rows)
    np.testing.assert_allclose(faiss_d, exact_d, atol=1e-4)


def test_a_missing_faiss_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    q, g = random_problem(queries=1)
    with pytest.raises(ConfigError, match=r"faiss-cpu: pip install 'stadb-reid\[search\]'") as error:
        faiss_search(q, g, 3)
    assert "\n" not in str(error.value)


def test_rerank_of_a_small_gallery_is_the_full_reranking() -> None:
    q, g = random_problem(seed=2, gallery_size=60, queries=4)
    distances, rows = rerank_nearest(q, [g[:25], g[25:]], 5, pool=100)
    full = k_reciprocal_rerank_features(q, g, metric="euclidean")
    expected = np.argsort(full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(distances, np.take_along_axis(full, expected, axis=1), atol=1e-6)


def test_rerank_of_a_large_gallery_reorders_a_shortlist() -> None:
    q, g = random_problem(seed=3, gallery_size=400, queries=3)
    _, plain = exact_search(q, g, 20)
    _, reranked = rerank_nearest(q, g, 5, pool=20)
    shortlist = set(plain.ravel().tolist())
    assert set(reranked.ravel().tolist()) <= shortlist


def test_search_index_results_and_json(tmp_path: Path) -> None:
    folder, images = tmp_path / "index", gallery(9)
    build(folder, images, FakeExtractor())
    index = GalleryIndex.open(folder)
    query = Path("/queries/0004_c2s1_000009_01.jpg")
    results = search_index(index, embedding_of(images[4])[None], [query], top_k=3)
    (result,) = results
    assert (result.path, result.pid, result.camid) == (str(query), 4, 1)
    assert [m.rank for m in result.matches] == [1, 2, 3]
    best = result.matches[0]
    assert (best.row, best.path, best.pid, best.camid) == (4, str(images[4]), 4, 1)
    assert best.distance == pytest.approx(0.0, abs=1e-3)
    report = json.loads(json.dumps(results_to_json(results, index=str(folder), top_k=3)))
    assert report["index"] == str(folder) and report["top_k"] == 3
    assert report["queries"][0]["matches"][0] == {
        "rank": 1,
        "row": 4,
        "path": str(images[4]),
        "distance": best.distance,
        "pid": 4,
        "camid": 1,
    }
    text = format_results(results).splitlines()
    assert text[0] == f"{query}  (id 4, camera 2)" and text[1].startswith("   1.  0.0000  /gallery/0004_")
    with pytest.raises(ValueError, match="2 query paths"):
        search_index(index, embedding_of(images[0])[None], [query, query])


# ------------------------------------------------------------------------------------- the commands
def write_model_folder(folder: Path, seed: int) -> Path:
    """A small untrained model folder (ResNet-18, 64 x 32 input): embeddings vary, ranking is arbitrary."""
    torch.manual_seed(seed)
    run = load_config([], {"model.backbone": "resnet18", "data.height": 64, "data.width": 32})
    network = STADBNet(4, backbone="resnet18")
    described = model_folder_config(
        network, config_to_dict(run), num_classes=4, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return save_model_folder(folder, network, described)


def write_people(folder: Path, people: list[tuple[int, int]], image_seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, camera in people:
        paths.append(folder / f"{pid:04d}_c{camera + 1}s1_{image_seed:06d}_01.jpg")
        render_person(pid, camera, image_seed=image_seed, height=64, width=32).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return write_model_folder(root / "model-a", seed=0), write_model_folder(root / "model-b", seed=1)


@pytest.fixture(scope="module")
def built(models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An index of 8 gallery images built with model A, and the gallery folder."""
    root = tmp_path_factory.mktemp("built")
    images = root / "gallery"
    write_people(images, [(pid, camera) for pid in range(4) for camera in range(2)])
    index_gallery(models[0], images, root / "gallery.index", chunk_size=3, progress=False)
    return root / "gallery.index", images


def test_index_then_search_then_add(models, tmp_path: Path, monkeypatch, capsys) -> None:
    model, _ = models
    images, index = tmp_path / "gallery", tmp_path / "gallery.index"
    gallery_paths = write_people(images, [(pid, camera) for pid in range(4) for camera in range(2)])
    arguments = ["index", "--model", str(model), "--images", str(images), "--out", str(index)]
    code, out, err = run_cli([*arguments, "--chunk-size", "3", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    precision, summary = out.strip().splitlines()
    assert (
        precision.startswith("precision ")
        and summary == f"{index}: 8 images in 3 chunks (8 new, 8 embedded now)"
    )

    queries = tmp_path / "queries"
    queries.mkdir()
    shutil.copy(gallery_paths[5], queries / gallery_paths[5].name)  # finds itself at distance 0
    write_people(queries, [(0, 1)], image_seed=9)
    search = ["search", "--index", str(index), "--query", str(queries)]
    code, out, err = run_cli([*search, "--top-k", "3"], monkeypatch, capsys)
    assert code == 0, err
    report_path, page_path = tmp_path / "gallery.index-search.json", tmp_path / "gallery.index-search.html"
    assert out.strip().endswith(f"wrote {report_path} and {page_path}")
    report = json.loads(report_path.read_text())
    assert {k: report[k] for k in ("gallery_size", "metric", "backend", "top_k", "rerank")} == {
        "gallery_size": 8,
        "metric": "euclidean",
        "backend": "exact",
        "top_k": 3,
        "rerank": False,
    }
    assert report["model"] == str(model.resolve()) and report["index"] == str(index.resolve())
    copied = next(q for q in report["queries"] if Path(q["path"]).name == gallery_paths[5].name)
    assert (copied["pid"], copied["camid"]) == (2, 1)
    best = copied["matches"][0]
    assert best["path"] == str(gallery_paths[5].resolve()) and best["distance"] < 1e-3
    assert (best["pid"], best["camid"]) == (2, 1) and len(copied["matches"]) == 3
    assert f"   1.  0.0000  {gallery_paths[5].resolve()}  (id 2, camera 2)" in out
    assert page_path.read_text().count("<img ") == 2 * (1 + 3)

    # Searching again must not replace the reports silently.
    code, _, err = run_cli(search, monkeypatch, capsys)
    assert_one_line_error(code, err, f"{report_path} exists; pass --overwrite to replace it")

    write_people(images, [(7, 0), (7, 1)], image_seed=1)
    code, out, err = run_cli([*arguments, "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"{index}: 10 images in 4 chunks (2 new, 2 embedded now)"

    backends = ["exact", "faiss"] if faiss_available() else ["exact"]
    for backend in backends:
        options = ["--rerank", "--metric", "cosine", "--backend", backend, "--overwrite"]
        code, _, err = run_cli([*search, *options], monkeypatch, capsys)
        assert code == 0, err
        report = json.loads(report_path.read_text())
        assert report["rerank"] is True and report["gallery_size"] == 10 and report["backend"] == backend
        copied = next(q for q in report["queries"] if Path(q["path"]).name == gallery_paths[5].name)
        assert copied["matches"][0]["path"] == str(gallery_paths[5].resolve())


def bad_inputs(models: tuple[Path, Path], built: tuple[Path, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    """Command line and the message of each bad input (the files are made here)."""
    (model, other), (index, images) = models, built
    (tmp / "empty").mkdir()
    (tmp / "bad.jpg").write_bytes(b"this is not a JPEG")
    (tmp / "busy").mkdir()
    (tmp / "busy" / "notes.txt").write_text("not an index")
    incomplete = shutil.copytree(model, tmp / "incomplete-model")
    (incomplete / "model.safetensors").unlink()
    reports = ["--out-json", str(tmp / "r.json"), "--out-html", str(tmp / "r.html")]
    search = ["search", *reports, "--index", str(index), "--query"]
    build = ["index", "--images", str(images), "--out"]
    another = f"gallery index {index} was built with the model {model.resolve()}, not with {other}"
    return {
        "index with another model": ([*build, str(index), "--model", str(other)], another),
        "search with another model": ([*search, str(images), "--model", str(other)], another),
        "unreadable query": ([*search, str(tmp / "bad.jpg")], f"cannot read image {tmp / 'bad.jpg'}"),
        "missing query": (
            [*search, str(tmp / "no.jpg")],
            f"query image or folder not found: {tmp / 'no.jpg'}",
        ),
        "empty gallery": (
            ["index", "--model", str(model), "--images", str(tmp / "empty"), "--out", str(tmp / "i")],
            f"no images (.bmp, .jpeg, .jpg, .png, .ppm, .tif, .tiff, .webp) in {tmp / 'empty'}",
        ),
        "model folder without its weights": (
            [*build, str(tmp / "new.index"), "--model", str(incomplete)],
            f"model folder {incomplete} lacks model.safetensors",
        ),
        "out is not an index": (
            [*build, str(tmp / "busy"), "--model", str(model)],
            f"{tmp / 'busy'} exists and is not a gallery index",
        ),
        "search a folder that is no index": (
            ["search", *reports, "--index", str(tmp / "busy"), "--query", str(images)],
            f"not a gallery index: {tmp / 'busy' / 'manifest.json'} is missing",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "index with another model",
        "search with another model",
        "unreadable query",
        "missing query",
        "empty gallery",
        "model folder without its weights",
        "out is not an index",
        "search a folder that is no index",
    ],
)
def test_every_bad_input_is_one_line_naming_the_path(
    case, models, built, tmp_path, monkeypatch, capsys
) -> None:
    arguments, message = bad_inputs(models, built, tmp_path)[case]
    code, _, err = run_cli(arguments, monkeypatch, capsys)
    assert_one_line_error(code, err, message)


def test_an_unfinished_index_or_a_gone_model_is_named(models, tmp_path: Path, monkeypatch, capsys) -> None:
    model_copy = shutil.copytree(models[0], tmp_path / "moved-model")
    images = tmp_path / "gallery"
    write_people(images, [(0, 0), (1, 1), (2, 0)])
    index = tmp_path / "g.index"
    index_gallery(model_copy, images, index, chunk_size=2, progress=False)
    search = ["search", "--index", str(index), "--query", str(images), "--out-json", str(tmp_path / "r.json")]
    shutil.rmtree(model_copy)
    code, _, err = run_cli(search, monkeypatch, capsys)
    assert_one_line_error(
        code, err, f"the model folder {model_copy.resolve()} of gallery index {index} is gone"
    )
    (index / "embeddings-00001.npy").unlink()
    code, _, err = run_cli([*search, "--model", str(models[0])], monkeypatch, capsys)
    assert_one_line_error(code, err, f"gallery index {index} is unfinished (1 of 2 chunks missing)")


def test_faiss_requested_but_missing(built, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    index, images = built
    arguments = ["search", "--index", str(index), "--query", str(images), "--backend", "faiss"]
    code, _, err = run_cli([*arguments, "--out-json", str(tmp_path / "r.json")], monkeypatch, capsys)
    assert_one_line_error(code, err, "the faiss backend needs faiss-cpu: pip install 'stadb-reid[search]'")
