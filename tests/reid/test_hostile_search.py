"""Hostile input to ``stadb-reid index`` and ``search``: file names, non-finite embeddings, output paths.

Every refusal is exit status 2 and one ``error:`` line naming the culprit, without a traceback, and
leaves every file as it was; printed file names never carry a control character to the terminal.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from stadb_reid.commands import index_gallery
from stadb_reid.inference import ReIDExtractor
from stadb_reid.model.folder.names import WEIGHTS_NAME
from stadb_reid.search.manifest import MANIFEST_NAME

from .test_cli_errors import run_cli
from .test_hostile_model_folder import snapshot
from .test_search import write_model_folder, write_people

# Characters a terminal acts on: none of them may reach stdout or stderr raw.
CONTROLS = [chr(c) for c in (*range(32), *range(127, 160))] + [
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\udcff",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A model folder, a gallery of four images and its index (two chunks)."""
    root = tmp_path_factory.mktemp("hostile-search")
    model = write_model_folder(root / "model", seed=0)
    write_people(root / "gallery", [(0, 0), (0, 1), (1, 0), (1, 1)])
    index_gallery(model, root / "gallery", root / "gallery.index", chunk_size=2, progress=False)
    return model, root / "gallery", root / "gallery.index"


def assert_refused(code: object, out: str, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert "Traceback" not in err
    assert not any(c in line for line in (out + err).strip().split("\n") for c in CONTROLS), repr(out + err)


def escaped(text: str) -> str:
    """``text`` with its control characters as Python escapes, other characters (``\\`` too) as they are."""
    return "".join(c.encode("unicode_escape").decode("ascii") if c in CONTROLS else c for c in text)


def search_arguments(index: Path, query: Path, out: Path, *extra: str) -> list[str]:
    outputs = ["--out-json", str(out / "r.json"), "--out-html", str(out / "r.html")]
    return ["search", "--index", str(index), "--query", str(query), *outputs, *extra]


# ------------------------------------------------------------------------------------ printed names
EVIL_NAMES = {
    "osc-title": "\x1b]0;owned\x07",
    "osc-hyperlink": "\x1b]8;;http:evil.invalid\x1b\\x\x1b]8;;\x1b\\",
    "csi-clear": "\x1b[2J\x1b[H",
    "c1-csi": "\x9b31m",
    "newline": "\nerror: forged line",
    "carriage-return": "\rforged",
    "bidi-override": "\u202egpj.exe",
    "line-separator": "\u2028forged",
    "undecodable-byte": "\udcff",  # the byte 0xff, not UTF-8, as os.fsdecode gives it
}


def hostile_copy(images: Path, number: int, evil: str) -> Path:
    return images / f"0003_c1s1_00000{number}_01{evil}.jpg"


@pytest.fixture(scope="module")
def evil_gallery(setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gallery plus a copy of one of its images under each hostile name (one index serves all)."""
    images = Path(shutil.copytree(setup[1], tmp_path_factory.mktemp("evil") / "gallery"))
    sources = sorted(images.iterdir())
    for number, evil in enumerate(EVIL_NAMES.values()):
        shutil.copy(sources[number % len(sources)], hostile_copy(images, number, evil))
    return images


def test_index_prints_hostile_names_escaped(
    setup, evil_gallery: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    arguments = [
        "index",
        "--model",
        str(setup[0]),
        "--images",
        str(evil_gallery),
        "--out",
        str(tmp_path / "i"),
    ]
    code, out, err = run_cli([*arguments, "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert not any(c in out + err for c in CONTROLS if c != "\n"), repr(out + err)


@pytest.fixture(scope="module")
def evil_index(setup, evil_gallery: Path) -> Path:
    index = evil_gallery.parent / "g.index"
    index_gallery(setup[0], evil_gallery, index, progress=False)
    return index


@pytest.mark.parametrize("number", range(len(EVIL_NAMES)), ids=EVIL_NAMES.keys())
def test_printed_file_names_are_escaped(
    number: int, evil_gallery: Path, evil_index: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    evil = list(EVIL_NAMES.values())[number]
    hostile = hostile_copy(evil_gallery, number, evil)
    code, out, err = run_cli(
        search_arguments(evil_index, hostile, tmp_path, "--top-k", "5"), monkeypatch, capsys
    )
    assert code == 0, err
    assert not any(c in out + err for c in CONTROLS if c != "\n"), repr(out)
    assert len(out.strip().splitlines()) == 1 + 5 + 1, "the query, its matches and the files written"
    assert out.count(escaped(evil)) == 2, "the query and its own match, escaped"
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert report["queries"][0]["path"] == str(hostile.resolve()), "the report keeps the real name"


@pytest.mark.parametrize("evil", EVIL_NAMES.values(), ids=EVIL_NAMES.keys())
def test_a_name_in_an_error_is_escaped(evil: str, setup, tmp_path: Path, monkeypatch, capsys) -> None:
    _, _, index = setup
    broken = tmp_path / f"query{evil}.jpg"
    broken.write_bytes(b"not a JPEG")
    before = snapshot(tmp_path, index)
    code, out, err = run_cli(search_arguments(index, broken, tmp_path), monkeypatch, capsys)
    assert_refused(code, out, err, "cannot read image", escaped(evil))
    assert snapshot(tmp_path, index) == before


# ----------------------------------------------------------------------------- non-finite embeddings
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus-inf"])
@pytest.mark.parametrize("chunk", ["embeddings-00000.npy", "embeddings-00001.npy"])
def test_a_non_finite_chunk_is_refused(
    value: float, chunk: str, setup, tmp_path, monkeypatch, capsys
) -> None:
    _, gallery, built = setup
    index = Path(shutil.copytree(built, tmp_path / "g.index"))
    rows = np.load(index / chunk)
    rows[1, 3] = value
    np.save(index / chunk, rows)
    before = snapshot(tmp_path)
    code, out, err = run_cli(search_arguments(index, gallery, tmp_path / "out"), monkeypatch, capsys)
    assert_refused(code, out, err, f"damaged gallery index chunk {index / chunk}: it holds NaN or infinity")
    assert snapshot(tmp_path) == before


def overflowing_model(model: Path, folder: Path) -> Path:
    """A copy of ``model`` with finite weights whose embeddings overflow to infinity."""
    folder = Path(shutil.copytree(model, folder))
    tensors = load_file(str(folder / WEIGHTS_NAME))
    for name in ("global_head.reduction.2.weight", "global_head.reduction.2.bias"):  # the global feature's BN
        tensors[name] = torch.full_like(tensors[name], 3e38)
    save_file(tensors, str(folder / WEIGHTS_NAME))
    return folder


def test_a_model_giving_non_finite_embeddings_indexes_nothing(setup, tmp_path, monkeypatch, capsys) -> None:
    model, gallery, _ = setup
    hostile = overflowing_model(model, tmp_path / "model")
    arguments = ["index", "--model", str(hostile), "--images", str(gallery), "--out", str(tmp_path / "i")]
    code, out, err = run_cli([*arguments, "--no-progress"], monkeypatch, capsys)
    assert_refused(code, out, err, "a non-finite embedding (NaN or infinity); nothing of it was indexed")
    assert not list((tmp_path / "i").glob("embeddings-*.npy"))


def test_a_non_finite_query_embedding_is_refused(setup, tmp_path, monkeypatch, capsys) -> None:
    _, gallery, index = setup
    query = sorted(gallery.iterdir())[0]
    original = ReIDExtractor.__call__

    def poisoned(self, images, **options):
        embeddings = original(self, images, **options)
        embeddings[0, 0] = np.nan
        return embeddings

    monkeypatch.setattr(ReIDExtractor, "__call__", poisoned)
    before = snapshot(tmp_path, index)
    code, out, err = run_cli(search_arguments(index, query, tmp_path), monkeypatch, capsys)
    assert_refused(code, out, err, f"gives the query {query.resolve()} a non-finite embedding")
    assert snapshot(tmp_path, index) == before


def test_the_report_is_standard_json(setup, tmp_path, monkeypatch, capsys) -> None:
    _, gallery, index = setup
    code, _, err = run_cli(search_arguments(index, gallery, tmp_path, "--rerank"), monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert all(np.isfinite(m["distance"]) for q in report["queries"] for m in q["matches"])


# ------------------------------------------------------------------------------------ output paths
def clashes(model: Path, gallery: Path, index: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """Output options and the message each clash gives (files and links made here)."""
    image = sorted(gallery.iterdir())[0]
    (tmp / "folder").mkdir()
    (tmp / "a-file").write_text("mine")
    (tmp / "link.json").symlink_to(tmp / "r.json")
    same = "--out-json and --out-html name the same file"
    return {
        "same-path": (["--out-json", f"{tmp}/same.out", "--out-html", f"{tmp}/same.out"], same),
        "same-after-dotdot": (["--out-json", f"{tmp}/x.json", "--out-html", f"{tmp}/folder/../x.json"], same),
        "same-through-a-link": (["--out-json", f"{tmp}/r.json", "--out-html", f"{tmp}/link.json"], same),
        "manifest": (
            ["--out-html", str(index / MANIFEST_NAME)],
            f"--out-html {index / MANIFEST_NAME} lies in",
        ),
        "chunk": (["--out-json", str(index / "embeddings-00000.npy")], "lies in the gallery index"),
        "index-folder": (["--out-json", str(index)], f"--out-json {index} lies in the gallery index"),
        "new-file-in-index": (["--out-json", str(index / "r.json")], "lies in the gallery index"),
        "query-image": (["--out-html", str(image)], f"--out-html {image} is an input of the search"),
        "model-weights": (["--out-json", str(model / WEIGHTS_NAME)], "is an input of the search"),
        "a-folder": (["--out-json", str(tmp / "folder")], f"--out-json {tmp / 'folder'} is a folder"),
        "under-a-file": (
            ["--out-json", str(tmp / "a-file" / "r.json")],
            f"cannot write {tmp / 'a-file' / 'r.json'}",
        ),
    }


CLASHES = [
    "same-path",
    "same-after-dotdot",
    "same-through-a-link",
    "manifest",
    "chunk",
    "index-folder",
    "new-file-in-index",
    "query-image",
    "model-weights",
    "a-folder",
    "under-a-file",
]


@pytest.mark.parametrize("case", CLASHES)
def test_an_output_that_would_overwrite_an_input_is_refused(
    case: str, setup, tmp_path, monkeypatch, capsys
) -> None:
    model, gallery, built = setup
    index = Path(shutil.copytree(built, tmp_path / "g.index"))
    work = tmp_path / "work"
    work.mkdir()
    options, message = clashes(model, gallery, index, work)[case]
    defaults = ["--out-json", str(work / "r.json"), "--out-html", str(work / "r.html")]
    arguments = ["search", "--index", str(index), "--query", str(gallery), *defaults, *options, "--overwrite"]
    before = snapshot(tmp_path, model, gallery)
    code, out, err = run_cli(arguments, monkeypatch, capsys)
    assert_refused(code, out, err, message)
    assert snapshot(tmp_path, model, gallery) == before


# ---------------------------------------------------------------------------------- index --overwrite
USER_FILES = {
    ".my.tmp": "a user's temporary file",
    "notes.txt": "mine",
    "embeddings.npy": "not a chunk name",
    "embeddings-99999.npy": "named like a chunk, not listed in the manifest",
    ".manifest.json.tmp": "no tempfile suffix",
    ".notes.txt.abcd1234.tmp": "a temporary file of another file",
}


def test_overwrite_deletes_only_the_files_the_index_wrote(setup, tmp_path, monkeypatch, capsys) -> None:
    model, gallery, built = setup
    index = Path(shutil.copytree(built, tmp_path / "g.index"))
    for name, text in USER_FILES.items():
        (index / name).write_text(text)
    leftovers = [".embeddings-00001.npy.k2j4_9ab.tmp", ".manifest.json.zz81xqpe.tmp"]  # of a killed run
    for name in leftovers:
        (index / name).write_bytes(b"half")
    arguments = ["index", "--model", str(model), "--images", str(gallery), "--out", str(index)]
    code, _, err = run_cli(
        [*arguments, "--overwrite", "--chunk-size", "3", "--no-progress"], monkeypatch, capsys
    )
    assert code == 0, err
    assert {name: (index / name).read_text() for name in USER_FILES} == USER_FILES
    assert not any((index / name).exists() for name in leftovers)
    chunks = [chunk["file"] for chunk in json.loads((index / MANIFEST_NAME).read_text())["chunks"]]
    assert len(chunks) == 2 and "embeddings-99999.npy" not in chunks, "new names, past the user's"
    assert sorted(p.name for p in index.iterdir() if p.name not in USER_FILES) == sorted(
        [*chunks, MANIFEST_NAME]
    )


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ('{"format": "someone-elses", "files": ["notes.txt"]}', "not a gallery index manifest"),
        ("{not json", "damaged gallery index manifest"),
        ("[]", "not a gallery index manifest"),
    ],
    ids=["foreign", "damaged", "a-list"],
)
def test_overwrite_of_a_folder_it_cannot_read_deletes_nothing(
    manifest: str, message: str, setup, tmp_path, monkeypatch, capsys
) -> None:
    model, gallery, _ = setup
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(manifest)
    for name, text in USER_FILES.items():
        (folder / name).write_text(text)
    (folder / "embeddings-00000.npy").write_text("a user's file of that name")
    before = snapshot(tmp_path)
    arguments = [
        "index",
        "--model",
        str(model),
        "--images",
        str(gallery),
        "--out",
        str(folder),
        "--overwrite",
    ]
    code, out, err = run_cli([*arguments, "--no-progress"], monkeypatch, capsys)
    assert_refused(code, out, err, message, str(folder), "remove")
    assert snapshot(tmp_path) == before
