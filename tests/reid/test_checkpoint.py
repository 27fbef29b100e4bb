import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_reid.engine import load_checkpoint, load_latest_checkpoint, save_checkpoint
from stadb_reid.engine.checkpoint import CheckpointError, previous_checkpoint_path
from stadb_reid.engine.rng import capture_rng_state, restore_rng_state

WEIGHT = torch.arange(64, dtype=torch.float32)
STATE = {"model": {"weight": WEIGHT}, "epoch": 3}


def saved(tmp_path: Path, epoch: int = 3) -> Path:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint({**STATE, "epoch": epoch}, path)
    return path


def test_roundtrip_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = saved(tmp_path)
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["weight"], WEIGHT)
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]


def test_the_replaced_checkpoint_is_kept_as_previous(tmp_path: Path) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 2
    assert load_checkpoint(previous_checkpoint_path(path))["epoch"] == 1
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
    ],
)
def test_damage_is_reported_by_kind(tmp_path: Path, damage: object, message: str) -> None:
    path = saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_latest_falls_back_to_the_previous_good_checkpoint(tmp_path: Path) -> None:
    path = saved(tmp_path, epoch=1)
    save_checkpoint({**STATE, "epoch": 2}, path)
    path.write_bytes(path.read_bytes()[:100])
    lines: list[str] = []
    found = load_latest_checkpoint(path, log=lines.append)
    assert found is not None
    state, source = found
    assert state["epoch"] == 1 and source == previous_checkpoint_path(path)
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
