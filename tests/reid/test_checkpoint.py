import errno
import hashlib
import io
import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_reid.engine import load_checkpoint
from stadb_reid.engine.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    previous_checkpoint_path,
    save_checkpoint,
)
from stadb_reid.engine.rng import capture_rng_state, restore_rng_state

WEIGHT = torch.arange(64, dtype=torch.float32)
# Every entry the trainer saves; train --resume needs them all.
STATE = {
    "model": {"weight": WEIGHT},
    "optimizer": {"state": {}, "param_groups": []},
    "grad_scaler": {},
    "completed_epochs": 3,
    "resume_at": {"epoch": 4, "step": 0, "loss_sum": 0.0},
    "rng": {},
    "train_seconds": 1.5,
    "num_classes": 3,
    "config": {"seed": 0},
    "history": [{"epoch": 1, "loss": 2.5}],
    "torchrun_run_id": None,
}


class CreatesFile:
    """Unpickling this runs ``open(marker, "w")``: the shape of a checkpoint crafted to run code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def with_header(payload: bytes, version: int) -> bytes:
    """A file of checkpoint format ``version`` around ``payload``, with a correct checksum."""
    digest = hashlib.sha256(payload).digest()
    return b"STADBCKPT" + bytes([version]) + digest + len(payload).to_bytes(8, "little") + payload


def saved(tmp_path: Path, epoch: int = 3) -> Path:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint({**STATE, "completed_epochs": epoch}, path)
    return path


def test_roundtrip_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = saved(tmp_path)
    state = load_checkpoint(path)
    assert state["completed_epochs"] == 3 and torch.equal(state["model"]["weight"], WEIGHT)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_the_replaced_checkpoint_is_kept_as_previous(tmp_path: Path) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "completed_epochs": 2}, path)
    assert load_checkpoint(path)["completed_epochs"] == 2
    assert load_checkpoint(previous_checkpoint_path(path))["completed_epochs"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@settings(max_examples=30, deadline=None)
@given(position=st.floats(0.0, 1.0, exclude_max=True), flip=st.integers(1, 255))
def test_any_damaged_byte_is_detected(
    tmp_path_factory: pytest.TempPathFactory, position: float, flip: int
) -> None:
    path = saved(tmp_path_factory.mktemp("ckpt"))
    data = bytearray(path.read_bytes())
    data[int(position * len(data))] ^= flip
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "is truncated"),
        (lambda data: data[:20], "is truncated"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "is corrupted"),
        (lambda data: b"PK" + data[2:], "not a stadb-reid checkpoint"),
        (lambda data: data + b"xyz", "has 3 unexpected bytes after the payload"),
    ],
)
def test_damage_is_reported_by_kind(tmp_path: Path, damage: object, message: str) -> None:
    path = saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_latest_falls_back_to_the_previous_good_checkpoint(tmp_path: Path) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "completed_epochs": 2}, path)
    path.write_bytes(path.read_bytes()[:100])
    lines: list[str] = []
    found = load_latest_checkpoint(path, log=lines.append)
    assert found is not None
    state, source = found
    assert state["completed_epochs"] == 1 and source == previous_checkpoint_path(path)
    assert len(lines) == 1 and "truncated" in lines[0] and str(path) in lines[0]


def test_latest_without_checkpoints_and_with_only_damaged_ones(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path / "checkpoint.pt") is None
    path = saved(tmp_path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_latest_checkpoint(path, log=lambda _: None)


def test_rng_state_restores_every_generator() -> None:
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(()).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == first


def draws() -> tuple[float, ...]:
    return random.gauss(0, 1), np.random.standard_normal(), np.random.randint(1 << 30), torch.rand(()).item()


def test_rng_state_survives_a_checkpoint_bit_exactly(tmp_path: Path) -> None:
    draws()  # leaves a cached second Gaussian in Python's and NumPy's state
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({**STATE, "rng": capture_rng_state()}, path)
    first = draws()
    restore_rng_state(load_checkpoint(path)["rng"])
    assert draws() == first


@pytest.mark.parametrize(
    ("extra", "needs"), [("code", r"io\.open"), ("numpy", r"numpy\._?core\.multiarray\._reconstruct")]
)
def test_a_payload_that_needs_other_python_objects_is_refused_unrun(
    tmp_path: Path, extra: str, needs: str
) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({**STATE, "extra": CreatesFile(marker) if extra == "code" else np.zeros(3)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert re.fullmatch(
        f"checkpoint {re.escape(str(path))} refused: it needs {needs}, and loading it could run code",
        str(caught.value),
    )
    assert not marker.exists()


def torch_saved(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


REFUSED = r"refused: it needs more than tensors and plain data \(.+\), and loading it could run code"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"garbage", REFUSED),
        (pickle.dumps([1], protocol=4), REFUSED),  # torch warns about the protocol; it must stay silent
        (b"PK\x03\x04garbage", r"cannot read checkpoint .+: PytorchStreamReader failed"),
        (torch_saved([1, 2]), r"is not a stadb-reid checkpoint \(it holds a list\)"),
    ],
    ids=["garbage", "pickle-protocol-4", "broken-zip", "list"],
)
def test_a_payload_that_is_no_checkpoint_is_one_line(
    tmp_path: Path, recwarn: pytest.WarningsRecorder, payload: bytes, message: str
) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(with_header(payload, version=2))
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert not recwarn.list


def test_a_checkpoint_of_the_pickled_numpy_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(with_header(torch_saved({**STATE, "rng": {"numpy": np.random.get_state()}}), version=1))
    with pytest.raises(CheckpointError, match="older stadb-reid with pickled NumPy RNG state; it cannot"):
        load_checkpoint(path)


def test_missing_entries_are_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {"weight": WEIGHT}, "completed_epochs": 1}, path)
    with pytest.raises(CheckpointError, match=f"{path} is incomplete: missing 'config', 'num_classes'$"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="missing 'optimizer', 'grad_scaler', 'resume_at', 'rng', 't"):
        load_latest_checkpoint(path, log=lambda _: None)
    assert load_checkpoint(path, require=["model"])["completed_epochs"] == 1


def test_a_damaged_checkpoint_is_not_rotated_over_the_good_previous_one(tmp_path: Path) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "completed_epochs": 2}, path)
    path.write_bytes(path.read_bytes()[:-10])
    save_checkpoint({**STATE, "completed_epochs": 3}, path)
    assert load_checkpoint(path)["completed_epochs"] == 3
    assert load_checkpoint(previous_checkpoint_path(path))["completed_epochs"] == 1


def test_temporary_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path: Path) -> None:
    path = saved(tmp_path)
    leftovers = [path.parent / ".checkpoint.pt.k1ll3d_1.tmp", path.parent / ".checkpoint.pt.x.tmp"]
    unrelated = [
        path.parent / ".other.pt.k1ll3d_1.tmp",
        path.parent / "checkpoint.pt.tmp",
        path.parent / "a.tmp",
    ]
    for file in leftovers + unrelated:
        file.write_bytes(b"partial")
    save_checkpoint(STATE, path)
    assert not any(file.exists() for file in leftovers)
    assert all(file.exists() for file in unrelated)


def test_a_full_disk_is_one_line_and_keeps_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "completed_epochs": 2}, path)
    before = {file.name: file.read_bytes() for file in path.parent.iterdir()}

    class FullDisk(io.FileIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda handle, mode: FullDisk(handle, mode))
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint({**STATE, "completed_epochs": 3}, path)
    monkeypatch.undo()
    assert str(caught.value) == (
        f"cannot save checkpoint {path}: No space left on device; the previous checkpoint is kept"
    )
    assert {file.name: file.read_bytes() for file in path.parent.iterdir()} == before
