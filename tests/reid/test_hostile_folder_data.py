"""Hostile folder datasets: clashing identity folder names, damaged images, links out of the data root.

The command-line cases run ``stadb-reid train`` in-process on a tiny ``folder`` dataset and must exit
2 with one line naming every folder or file at fault, before the first training step, print no
traceback and change nothing but the run's own (empty) output folder.
"""

import warnings
from pathlib import Path

import pytest
from PIL import Image

from stadb_reid.data import build_dataset
from stadb_reid.data.integrity import check_images_open, image_problem
from stadb_reid.errors import DatasetFormatError, ReIDWarning, UnreadableImageError

from .hostile import assert_refused, refused_without_side_effects, run_cli

TRAIN_ARGUMENTS = [
    "train",
    "--recipe",
    "defaults",
    "--dataset",
    "folder",
    "--data-root",
    "data",
    "--output-dir",
    "run",
    "--num-identities",
    "2",
    "--no-pretrained",
    "--no-progress",
    "--set",
    "data.num_workers=0",
]


def make_folder(root: Path, identities: dict[str, list[str]] | None = None, images: int = 2) -> Path:
    """A ``folder`` dataset of tiny JPEGs: ``identities`` maps a split to its identity folder names."""
    identities = identities or {"train": ["1", "2", "3"], "query": ["7", "8"], "gallery": ["7", "8", "9"]}
    for split, names in identities.items():
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(images):
                Image.new("RGB", (8, 16), (40 * index, 80, 120)).save(root / split / name / f"{index}.jpg")
    return root


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


CLASHES = {
    "1 and 01": ({"train": ["1", "01", "2"]}, ["train/01", "train/1"]),
    "three spellings": ({"train": ["1", "01", "001", "2"]}, ["train/001", "train/01", "train/1"]),
    "across query and gallery": ({"query": ["7"], "gallery": ["0007"]}, ["query/7", "gallery/0007"]),
    "across train and query": ({"train": ["5"], "query": ["05"]}, ["train/5", "query/05"]),
    "zero": ({"train": ["0", "00"]}, ["train/0", "train/00"]),
    "two clashes": ({"train": ["1", "01", "2", "02"]}, ["train/01, train/1", "train/02, train/2"]),
}


@pytest.mark.parametrize(("extra", "named"), CLASHES.values(), ids=CLASHES.keys())
def test_folder_names_of_one_identity_are_refused_naming_them(
    extra: dict[str, list[str]], named: list[str], tmp_path: Path
) -> None:
    root = make_folder(make_folder(tmp_path / "data"), extra)
    with pytest.raises(DatasetFormatError, match="would be one identity") as refused:
        build_dataset("folder", root)
    for folder in named:
        assert folder in str(refused.value)


@pytest.mark.parametrize(
    "name",
    ["\uff11", "\u0663", "\u00b9", "1 ", " 1", "-1", "1.0", "0x1", "1e3", "\u4e00", "1\n"],
    ids=[
        *("full-width 1", "Arabic-Indic 3", "superscript 1", "trailing space", "leading space"),
        *("negative", "decimal", "hex", "exponent", "CJK one", "newline"),
    ],
)
def test_identity_folder_names_outside_the_digits_0_to_9_are_refused(name: str, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"train": ["1", name, "2"], "query": ["7"], "gallery": ["7", "8"]})
    with pytest.raises(
        DatasetFormatError, match="must be a non-negative integer in the digits 0-9"
    ) as refused:
        build_dataset("folder", root)
    assert repr(str(root / "train" / name)) in str(refused.value)


def test_1_01_and_the_full_width_1_never_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_folder(tmp_path / "data", {"train": ["1", "01", "\uff11", "2"], "query": ["7"], "gallery": ["7"]})
    refused_without_side_effects(TRAIN_ARGUMENTS, tmp_path, monkeypatch, capsys, "\uff11", allowed=("run",))
    (tmp_path / "data" / "train" / "\uff11").rename(tmp_path / "data" / "train" / "3")
    refused_without_side_effects(
        TRAIN_ARGUMENTS, tmp_path, monkeypatch, capsys, "train/01, train/1", allowed=("run",)
    )


def test_distinct_names_are_distinct_identities_and_equal_names_match_across_splits(tmp_path: Path) -> None:
    root = make_folder(
        tmp_path / "data", {"train": ["1", "2", "10"], "query": ["0007"], "gallery": ["0007", "8"]}
    )
    dataset = build_dataset("folder", root)
    assert dataset.num_train_pids == 3
    assert {s.pid for s in dataset.query} == {7} and {s.pid for s in dataset.gallery} == {7, 8}


def write_bad(kind: str, path: Path) -> None:
    """Make ``path`` (a good JPEG of the dataset) into a bad image of ``kind``."""
    if kind == "truncated JPEG":
        cut(path)
    elif kind == "JPEG header only":
        cut(path, 0.1)
    elif kind in ("truncated PNG", "truncated BMP"):
        suffix = ".png" if "PNG" in kind else ".bmp"
        Image.frombytes("RGB", (32, 64), bytes(range(256)) * 24).save(path.with_suffix(suffix))
        path.unlink()
        cut(path.with_suffix(suffix))
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "text named .jpg":
        path.write_text("<html>not an image</html>")
    elif kind == "dangling link":
        path.unlink()
        path.symlink_to(path.parent / "gone.jpg")
    elif kind == "link loop":
        path.unlink()
        path.symlink_to(path)


BAD_IMAGES = {
    "truncated JPEG": "truncated",
    "JPEG header only": "truncated",
    "truncated PNG": "truncated",
    "truncated BMP": "truncated",
    "empty file": "empty file",
    "text named .jpg": "not an image",
    "dangling link": "missing",
    "link loop": "cannot open (Too many levels of symbolic links)",
}


@pytest.mark.parametrize(("kind", "problem"), BAD_IMAGES.items(), ids=BAD_IMAGES.keys())
def test_every_kind_of_bad_image_is_named_with_its_problem(kind: str, problem: str, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    write_bad(kind, root / "query" / "7" / "1.jpg")
    dataset = build_dataset("folder", root)
    bad = next(s.path for s in dataset.query if s.path.parent.name == "7" and s.path.stem == "1")
    with pytest.raises(UnreadableImageError) as refused:
        check_images_open(dataset)
    assert f"folder: 1 of 16 images cannot be read: {str(bad)!r} ({problem})" == str(refused.value)
    assert refused.value.path == bad


def test_good_images_pass_and_trailing_bytes_after_a_jpeg_are_fine(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    image = root / "train" / "1" / "0.jpg"
    image.write_bytes(image.read_bytes() + b"trailing metadata")  # decoders accept it, so must the check
    check_images_open(build_dataset("folder", root))
    assert image_problem(image) is None


def test_all_bad_files_of_every_split_are_listed_in_one_line_before_the_first_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_folder(tmp_path / "data")
    bad = [root / "train" / "2" / "1.jpg", root / "query" / "8" / "0.jpg", root / "gallery" / "9" / "1.jpg"]
    for path in bad:
        cut(path)
    names = [repr(str(Path("data") / path.relative_to(root))) for path in bad]
    line = refused_without_side_effects(
        TRAIN_ARGUMENTS,
        tmp_path,
        monkeypatch,
        capsys,
        "3 of 16 images cannot be read",
        *names,
        allowed=("run",),
    )
    assert line.count("(truncated)") == 3
    assert not any((tmp_path / "run").iterdir())  # nothing trained, nothing written


def link_out(root: Path, outside: Path, where: str) -> None:
    """Replace an image, an identity folder or a split folder of ``root`` by a link to ``outside``."""
    make_folder(outside, {"train": ["1", "3"]})
    target, link = {
        "image": (outside / "train" / "1" / "0.jpg", root / "train" / "1" / "0.jpg"),
        "identity folder": (outside / "train" / "3", root / "train" / "3"),
        "split folder": (outside / "train", root / "train"),
    }[where]
    if link.is_dir():
        for path in sorted(link.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        link.rmdir()
    else:
        link.unlink()
    link.symlink_to(target, target_is_directory=target.is_dir())


@pytest.mark.parametrize(
    ("where", "count", "train"), [("image", 1, 6), ("identity folder", 2, 6), ("split folder", 4, 4)]
)
def test_links_out_of_the_data_root_are_read_with_one_warning(
    where: str, count: int, train: int, tmp_path: Path
) -> None:
    root = make_folder(tmp_path / "data")
    link_out(root, tmp_path / "elsewhere", where)
    with pytest.warns(ReIDWarning) as caught:
        dataset = build_dataset("folder", root)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        f"folder: {count} of {len(dataset.train) + 10} images are links to files outside"
    )
    assert str(tmp_path / "elsewhere") in message
    assert len(dataset.train) == train  # read from there all the same


@pytest.mark.parametrize("where", ["link inside the root", "root itself a link"])
def test_links_within_the_data_root_are_silent(where: str, tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data")
    if where == "root itself a link":
        (tmp_path / "alias").symlink_to(root, target_is_directory=True)
        root = tmp_path / "alias"
    else:
        (root / "gallery" / "9" / "1.jpg").unlink()
        (root / "gallery" / "9" / "1.jpg").symlink_to(root / "train" / "1" / "0.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset("folder", root)


def test_the_command_line_says_so_once_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_folder(tmp_path / "data")
    link_out(root, tmp_path / "elsewhere", "identity folder")
    cut(root / "query" / "7" / "0.jpg")  # stops the run before training, after the warning
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(TRAIN_ARGUMENTS, monkeypatch, capsys)
    warning_lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning_lines) == 1 and "2 of 16 images are links to files outside 'data'" in warning_lines[0]
    error = "\n".join(line for line in err.splitlines() if not line.startswith("warning: "))
    assert_refused(code, out, error, "1 of 16 images cannot be read", "(truncated)")
