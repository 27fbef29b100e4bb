"""Crash-safe checkpoints: atomic writes, a SHA-256 checksum, and a previous copy to fall back on.

A checkpoint file is a short header followed by the ``torch.save`` payload::

    "STADBCKPT" 0x01 | sha256(payload) (32 bytes) | len(payload) (8 bytes, little-endian) | payload

It is written to a temporary file in the same folder, fsynced and renamed over the target, and the
copy it replaces is kept as ``<name>.prev.pt``. A crash at any point therefore leaves at least one
complete checkpoint, and a file damaged later (a full disk, a bad copy) fails its checksum instead of
loading garbage. Read checkpoints with :func:`load_checkpoint`; they are pickles, so load only files
you trust.
"""

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_checkpoint_path",
    "save_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.pt"
_MAGIC = b"STADBCKPT\x01"
_DIGEST_SIZE = 32
_LENGTH_SIZE = 8
_HEADER_SIZE = len(_MAGIC) + _DIGEST_SIZE + _LENGTH_SIZE


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or not a stadb-reid checkpoint."""


def previous_checkpoint_path(path: Path) -> Path:
    """Where :func:`save_checkpoint` keeps the file it replaced (``checkpoint.prev.pt``)."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_directory(folder: Path) -> None:
    # Makes the renames durable; not possible (nor needed) on every platform.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically with its checksum; the file it replaces becomes ``*.prev.pt``.

    Args:
        state: What to save; it must contain ``"model"``.
        path: The checkpoint file.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    header = _MAGIC + hashlib.sha256(payload).digest() + len(payload).to_bytes(_LENGTH_SIZE, "little")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(header)
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.replace(path, previous_checkpoint_path(path))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: The file is missing, truncated, fails its checksum or holds no model (the
            message names the path).
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not a stadb-reid checkpoint (unknown header)")
    if len(data) < _HEADER_SIZE:
        raise CheckpointError(f"checkpoint {path} is truncated ({len(data)} bytes, header incomplete)")
    digest = data[len(_MAGIC) : len(_MAGIC) + _DIGEST_SIZE]
    length = int.from_bytes(data[len(_MAGIC) + _DIGEST_SIZE : _HEADER_SIZE], "little")
    payload = memoryview(data)[_HEADER_SIZE:]
    if len(payload) != length:
        raise CheckpointError(
            f"checkpoint {path} is truncated: {len(payload)} of {length} payload bytes present"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted: its SHA-256 checksum does not match")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a stadb-reid checkpoint (no 'model' entry)")
    return state


def load_latest_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", *, log: Callable[[str], None] = print
) -> tuple[dict[str, Any], Path] | None:
    """The newest good checkpoint: ``path``, or its ``*.prev.pt`` copy if ``path`` is damaged.

    Args:
        path: The checkpoint file, e.g. ``OUTPUT/checkpoint.pt``.
        map_location: Passed to ``torch.load``.
        log: Receives a line naming each damaged file that was skipped.

    Returns:
        ``(state, file it came from)``, or ``None`` when neither file exists.

    Raises:
        CheckpointError: Checkpoint files exist but none of them is readable.
    """
    candidates = [p for p in (path, previous_checkpoint_path(path)) if p.exists()]
    if not candidates:
        return None
    problems = []
    for candidate in candidates:
        try:
            return load_checkpoint(candidate, map_location), candidate
        except CheckpointError as error:
            log(f"warning: skipping a damaged checkpoint: {error}")
            problems.append(str(error))
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
