"""Every command that opens a checkpoint refuses a crafted or damaged one: one ``error:`` line, exit 2.

The commands run in-process through ``stadb_reid.cli.main``, as the ``stadb-reid`` script does, on a
real checkpoint of a tiny training run (ResNet-10-T, global variant, 32 x 16 pixels).
"""

import contextlib
import io
import shutil
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from stadb_reid.cli import main
from stadb_reid.config import load_config
from stadb_reid.engine import load_checkpoint, train
from stadb_reid.engine.checkpoint import save_checkpoint
from stadb_reid.engine.run_folder import CHECKPOINT_NAME

from .test_checkpoint import CreatesFile

COMMANDS = ["evaluate", "export", "extract", "visualize", "train"]
SYNTHETIC = (
    "{num_train_identities: 3, num_test_identities: 2, num_cameras: 2, images_per_identity_per_camera: 2,"
    " num_distractors: 0, height: 32, width: 16}"
)
SETTINGS = [
    "data.height=32",
    "data.width=16",
    "data.num_identities=3",
    "data.num_instances=2",
    "data.num_workers=0",
    "data.test_batch_size=8",
    "model.backbone=resnet10t",
    "model.variant=global",
    "model.pretrained=false",
    "optim.epochs=1",
    "optim.warmup_epochs=1",
    "eval.every=0",
    "device=cpu",
    f"data.options={SYNTHETIC}",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``synthetic/`` data, ``run/checkpoint.pt`` trained on it and ``images/a.png``."""
    root = tmp_path_factory.mktemp("safety")
    overrides = {
        "data.dataset": "synthetic",
        "data.root": str(root / "synthetic"),
        "output_dir": str(root / "run"),
    }
    train(load_config([], overrides, SETTINGS), progress=False, log=lambda _: None)
    (root / "images").mkdir()
    Image.fromarray(np.zeros((32, 16, 3), np.uint8)).save(root / "images" / "a.png")
    return root


def arguments(command: str, checkpoint: Path, workspace: Path) -> list[str]:
    """The command line of ``command`` opening ``checkpoint`` (``train`` resumes from its folder)."""
    out = checkpoint.parent
    return {
        "evaluate": ["evaluate", "--checkpoint", str(checkpoint), "--no-progress"],
        "export": ["export", "--checkpoint", str(checkpoint), "--out", str(out / "model.onnx")],
        "extract": [
            "extract", "--checkpoint", str(checkpoint), "--images", str(workspace / "images"),
            "--out", str(out / "feats.npy"), "--no-progress",
        ],
        "visualize": ["visualize", "--checkpoint", str(checkpoint), "--output-dir", str(out / "figures"),
                      "--no-progress"],
        "train": [
            "train", "--recipe", "defaults",
            "--dataset", "synthetic", "--data-root", str(workspace / "synthetic"),
            "--output-dir", str(out), "--resume", "--no-progress",
            *(option for pair in SETTINGS for option in ("--set", pair)),
        ],
    }[command]  # fmt: skip


def run_cli(argv: list[str]) -> tuple[object, str]:
    """Run ``stadb-reid ARGV`` as its console script does: ``(exit code, stderr)``."""
    stderr = io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["stadb-reid", *argv]),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(stderr),
        pytest.raises(SystemExit) as exit_,
    ):
        main()
    return exit_.value.code, stderr.getvalue()


def assert_refused_in_one_line(code: object, stderr: str, *mentions: str) -> None:
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    for text in mentions:
        assert text in stderr, stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(
    workspace: Path, tmp_path: Path, command: str
) -> None:
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    state = load_checkpoint(workspace / "run" / CHECKPOINT_NAME)
    save_checkpoint({**state, "notes": CreatesFile(marker)}, checkpoint)
    code, stderr = run_cli(arguments(command, checkpoint, workspace))
    assert not marker.exists()
    assert_refused_in_one_line(
        code, stderr, str(checkpoint), "refused: it needs io.open, and loading it could run code"
    )


@pytest.mark.parametrize(("command", "missing"), [("evaluate", "'config'"), ("train", "'resume_at'")])
def test_a_checkpoint_with_missing_entries_is_refused_in_one_line(
    workspace: Path, tmp_path: Path, command: str, missing: str
) -> None:
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    state = load_checkpoint(workspace / "run" / CHECKPOINT_NAME)
    save_checkpoint({key: value for key, value in state.items() if f"'{key}'" != missing}, checkpoint)
    code, stderr = run_cli(arguments(command, checkpoint, workspace))
    assert_refused_in_one_line(code, stderr, f"{checkpoint} is incomplete: missing {missing}")


# What the one line says, by kind of damage (a flipped byte can hit any part of the file).
EXPECTED = {
    "flip": ("",),
    "truncate": ("is truncated", "not a stadb-reid checkpoint"),
    "append": ("unexpected bytes after the payload",),
}
DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.floats(0.0, 1.0, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0, exclude_max=True), st.just(0)),
    st.tuples(st.just("append"), st.just(0.0), st.integers(1, 4096)),
)


def damaged_copy(source: Path, target: Path, kind: str, position: float, amount: int) -> None:
    """Copy ``source`` with one byte XOR ``amount``, cut at ``position`` or ``amount`` bytes appended."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    offset = int(position * source.stat().st_size)
    with target.open("r+b") as file:
        if kind == "flip":
            file.seek(offset)
            byte = file.read(1)[0]
            file.seek(offset)
            file.write(bytes([byte ^ amount]))
        elif kind == "truncate":
            file.truncate(offset)
        else:
            file.seek(0, io.SEEK_END)
            file.write(bytes(range(256)) * (amount // 256) + bytes(amount % 256))


@pytest.mark.parametrize("command", COMMANDS)
def test_any_damaged_checkpoint_is_refused_in_one_line(
    workspace: Path, tmp_path_factory: pytest.TempPathFactory, command: str
) -> None:
    folder = tmp_path_factory.mktemp(command)

    @settings(max_examples=15, deadline=None)
    @given(damage=DAMAGE)
    def check(damage: tuple[str, float, int]) -> None:
        checkpoint = folder / "run" / CHECKPOINT_NAME
        damaged_copy(workspace / "run" / CHECKPOINT_NAME, checkpoint, *damage)
        code, stderr = run_cli(arguments(command, checkpoint, workspace))
        assert_refused_in_one_line(code, stderr, str(checkpoint))
        assert any(text in stderr for text in EXPECTED[damage[0]]), stderr

    check()
