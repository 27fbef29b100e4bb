"""The synthetic generator deletes only what it wrote: user files, symlinked roots, killed runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stadb_reid.data import generate_synthetic_reid
from stadb_reid.data.synthetic.metadata import METADATA_FILE
from stadb_reid.errors import StaleDatasetError

SMALL: dict[str, Any] = {
    "num_train_identities": 2,
    "num_test_identities": 1,
    "num_cameras": 2,
    "images_per_identity_per_camera": 2,
    "num_distractors": 1,
    "height": 16,
    "width": 8,
}
OTHER = {**SMALL, "seed": 1}  # parameters that force a regeneration


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and symbolic link (its target) under ``folder``, without following links."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = os.readlink(path)
            elif path.is_file():
                out[key] = path.read_bytes()
    return out


def images(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))


# ------------------------------------------------------------------- files inside the dataset
def add_user_file(root: Path, user: Path) -> Path:
    (root / "query" / "notes.txt").write_text("mine")
    return root / "query" / "notes.txt"


def add_user_folder(root: Path, user: Path) -> Path:
    (root / "bounding_box_train" / "mine").mkdir()
    (root / "bounding_box_train" / "mine" / "photo.jpg").write_bytes(b"mine")
    return root / "bounding_box_train" / "mine"


def link_split_folder(root: Path, user: Path) -> Path:
    for image in (root / "query").iterdir():
        image.unlink()
    (root / "query").rmdir()
    (root / "query").symlink_to(user, target_is_directory=True)
    return root / "query"


def link_image(root: Path, user: Path) -> Path:
    image = sorted((root / "bounding_box_test").iterdir())[0]
    image.unlink()
    image.symlink_to(user / "photo.jpg")
    return image


@pytest.mark.parametrize("add_foreign", [add_user_file, add_user_folder, link_split_folder, link_image])
def test_regenerating_refuses_and_deletes_nothing_when_a_split_folder_holds_foreign_paths(
    tmp_path: Path, add_foreign: Callable[[Path, Path], Path]
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "photo.jpg").write_bytes(b"user photo")
    root = generate_synthetic_reid(tmp_path / "syn", **SMALL)
    foreign = add_foreign(root, user)
    before = snapshot(tmp_path)
    with pytest.raises(StaleDatasetError, match=f"^{re.escape(str(foreign))} was not written") as info:
        generate_synthetic_reid(root, **OTHER)
    assert "\n" not in str(info.value) and info.value.path == foreign
    assert snapshot(tmp_path) == before  # checked before deleting: the old dataset is intact too


def test_regenerating_deletes_exactly_the_listed_files(tmp_path: Path) -> None:
    root = generate_synthetic_reid(tmp_path / "syn", **SMALL)
    assert sorted(json.loads((root / METADATA_FILE).read_text())["files"]) == images(root)
    (root / "query" / images(root / "query")[0]).unlink()  # a listed file the user removed is fine
    generate_synthetic_reid(root, **OTHER)
    assert json.loads((root / METADATA_FILE).read_text())["params"]["seed"] == 1
    assert sorted(json.loads((root / METADATA_FILE).read_text())["files"]) == images(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]  # no temporary folder left


def test_folder_without_manifest_counts_only_the_names_its_parameters_give(tmp_path: Path) -> None:
    root = generate_synthetic_reid(tmp_path / "syn", **SMALL)
    metadata = json.loads((root / METADATA_FILE).read_text())
    metadata.pop("files", None)  # as written before the manifest existed (format version 1)
    (root / METADATA_FILE).write_text(json.dumps(metadata))
    extra = root / "bounding_box_test" / "0099_c1s1_000000_00.jpg"  # the generator's pattern, not its file
    extra.write_bytes(b"user image")
    before = snapshot(tmp_path)
    with pytest.raises(StaleDatasetError, match=f"^{re.escape(str(extra))} was not written"):
        generate_synthetic_reid(root, **OTHER)
    assert snapshot(tmp_path) == before
    extra.unlink()
    generate_synthetic_reid(root, **OTHER)
    assert json.loads((root / METADATA_FILE).read_text())["params"]["seed"] == 1

    metadata = json.loads((root / METADATA_FILE).read_text())
    metadata["files"] = "everything"
    (root / METADATA_FILE).write_text(json.dumps(metadata))
    before = snapshot(tmp_path)
    with pytest.raises(StaleDatasetError, match=f"^{re.escape(str(root / METADATA_FILE))} does not tell"):
        generate_synthetic_reid(root, **SMALL)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------- symlinked root
def test_symlinked_root_is_regenerated_in_its_target_and_stays_a_link(tmp_path: Path) -> None:
    target = generate_synthetic_reid(tmp_path / "disk" / "syn", **SMALL)
    link = tmp_path / "syn"
    link.symlink_to(target, target_is_directory=True)
    assert generate_synthetic_reid(link, **OTHER) == link
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert json.loads((target / METADATA_FILE).read_text())["params"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "syn"]
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["syn"]


def test_symlinked_root_whose_target_holds_user_files_is_left_intact(tmp_path: Path) -> None:
    target = generate_synthetic_reid(tmp_path / "disk" / "syn", **SMALL)
    (target / "bounding_box_train" / "notes.txt").write_text("mine")
    link = tmp_path / "syn"
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(tmp_path)
    with pytest.raises(StaleDatasetError, match=r"notes\.txt was not written"):
        generate_synthetic_reid(link, **OTHER)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ temporary folders of killed runs
def test_temporary_folder_of_a_terminated_generation_is_removed_by_the_next_call(tmp_path: Path) -> None:
    root = tmp_path / "syn"
    script = "import sys; from stadb_reid.data import generate_synthetic_reid as g; g(sys.argv[1])"
    process = subprocess.Popen([sys.executable, "-c", script, str(root)])
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".syn.tmp-*/bounding_box_train/*.jpg")):  # generation under way
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGTERM
    assert len(list(tmp_path.glob(".syn.tmp-*"))) == 1 and not root.exists()
    generate_synthetic_reid(root, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"]


def test_only_abandoned_temporary_folders_are_removed(tmp_path: Path) -> None:
    from stadb_reid.data.synthetic._generated_files import STALE_TEMP_AGE_S, temp_prefix

    root = tmp_path / "syn"
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # exited and reaped: its pid belongs to no process
    old = time.time() - STALE_TEMP_AGE_S - 60
    folders = {
        "dead owner": f"{temp_prefix(root, dead.pid)}abcdefgh",
        "live owner": f"{temp_prefix(root)}abcdefgh",  # this test's own process
        "other host": ".syn.tmp-12-00000000-abcdefgh",
        "no owner, recent": ".syn.tmp-abcdefgh",
        "no owner, old": ".syn.tmp-ijklmnop",
        "old live owner": f"{temp_prefix(root)}qrstuvwx",
        "other dataset": f"{temp_prefix(tmp_path / 'other', dead.pid)}abcdefgh",
        "user folder": ".syn.tmp-my notes",
    }
    for name in folders.values():
        (tmp_path / name / "query").mkdir(parents=True)
        (tmp_path / name / "query" / "0001_c1s1_000000_00.jpg").write_bytes(b"partial")
    for key in ("no owner, old", "old live owner"):
        os.utime(tmp_path / folders[key], (old, old))
    (tmp_path / ".syn.tmp-file").write_text("a file, not a folder")
    (tmp_path / ".syn.tmp-link").symlink_to(tmp_path / folders["user folder"], target_is_directory=True)

    generate_synthetic_reid(root, **SMALL)
    removed = {key for key, name in folders.items() if not (tmp_path / name).exists()}
    assert removed == {"dead owner", "no owner, old", "old live owner"}
    assert (tmp_path / ".syn.tmp-file").is_file() and (tmp_path / ".syn.tmp-link").is_symlink()
