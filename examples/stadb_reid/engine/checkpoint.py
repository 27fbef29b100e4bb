"""Crash-safe checkpoints that cannot run code: atomic writes, a SHA-256 checksum and a previous copy.

A checkpoint file is a short header followed by the ``torch.save`` payload::

    "STADBCKPT" 0x02 | sha256(payload) (32 bytes) | len(payload) (8 bytes, little-endian) | payload

It is written to a temporary file in the same folder, fsynced and renamed over the target, and the
copy it replaces is kept as ``<name>.prev.pt`` when that copy is intact. A crash at any point therefore
leaves at least one complete checkpoint, and a file damaged later (a full disk, a bad copy) fails its
checksum instead of loading garbage. The payload holds only tensors and plain Python data and is read
with ``torch.load(weights_only=True)``: a file that needs any other Python object is refused, so
opening a checkpoint never runs code from it.
"""

import glob
import hashlib
import io
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .state import MODEL_KEYS
from .state import TRAIN_STATE_KEYS as RESUME_KEYS

__all__ = [
    "MODEL_KEYS",
    "RESUME_KEYS",
    "CheckpointError",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_checkpoint_path",
    "save_checkpoint",
]

_SIGNATURE = b"STADBCKPT"
# Format 1 pickled NumPy's RNG state as NumPy objects, which only an unrestricted unpickler reads.
_LEGACY_FORMAT, _FORMAT = 1, 2
_DIGEST_SIZE = 32
_LENGTH_SIZE = 8
_HEADER_SIZE = len(_SIGNATURE) + 1 + _DIGEST_SIZE + _LENGTH_SIZE
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


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


def _verified_payload(path: Path, data: bytes) -> tuple[int, memoryview]:
    """``(format, payload)`` of a checkpoint file's bytes once its header, length and checksum check out.

    Raises:
        CheckpointError: Unknown header or format, truncated, extra bytes or a checksum mismatch.
    """
    if not data.startswith(_SIGNATURE):
        raise CheckpointError(f"{path} is not a stadb-reid checkpoint (unknown header)")
    if len(data) < _HEADER_SIZE:
        raise CheckpointError(f"checkpoint {path} is truncated ({len(data)} bytes, header incomplete)")
    version = data[len(_SIGNATURE)]
    if version not in (_LEGACY_FORMAT, _FORMAT):
        raise CheckpointError(f"checkpoint {path} has format {version}, which this version cannot read")
    digest = data[len(_SIGNATURE) + 1 : len(_SIGNATURE) + 1 + _DIGEST_SIZE]
    length = int.from_bytes(data[_HEADER_SIZE - _LENGTH_SIZE : _HEADER_SIZE], "little")
    payload = memoryview(data)[_HEADER_SIZE:]
    if len(payload) < length:
        raise CheckpointError(
            f"checkpoint {path} is truncated: {len(payload)} of {length} payload bytes present"
        )
    if len(payload) > length:
        raise CheckpointError(
            f"checkpoint {path} has {len(payload) - length} unexpected bytes after the payload"
        )
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {path} is corrupted: its SHA-256 checksum does not match")
    return version, payload


def _is_intact(path: Path) -> bool:
    try:
        _verified_payload(path, path.read_bytes())
    except (OSError, CheckpointError):
        return False
    return True


def _write_atomically(data: list[bytes | memoryview], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Leftovers of saves killed before their rename (SIGKILL, power loss); never a complete checkpoint.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            for chunk in data:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        # A damaged file is overwritten rather than kept: rotating it would push out a good .prev.
        if path.exists() and _is_intact(path):
            os.replace(path, previous_checkpoint_path(path))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` atomically with its checksum; the intact file it replaces becomes ``*.prev.pt``.

    Temporary files left in the folder by an earlier save that was killed are removed first.

    Args:
        state: What to save: tensors and plain Python data only (see :data:`RESUME_KEYS`).
        path: The checkpoint file.

    Raises:
        CheckpointError: The file cannot be written (a full disk, no permission); the message names
            the path, and the checkpoint files already there are left as they were.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).digest()
    header = _SIGNATURE + bytes([_FORMAT]) + digest + len(payload).to_bytes(_LENGTH_SIZE, "little")
    try:
        _write_atomically([header, payload], path)
    except OSError as error:
        reason = error.strerror or str(error)
        raise CheckpointError(
            f"cannot save checkpoint {path}: {reason}; the previous checkpoint is kept"
        ) from error


def _unpickle(path: Path, payload: memoryview, map_location: str | torch.device) -> object:
    try:
        with warnings.catch_warnings():
            # A crafted payload may use a newer pickle protocol; its refusal below is the one message.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's restricted unpickler refuses any global outside tensors and plain data.
        if match := _UNSUPPORTED_GLOBAL.search(str(error)):
            needs = match.group(1)
        else:
            detail = _UNPICKLER_DETAIL.search(str(error))
            needs = f"more than tensors and plain data ({detail.group(1) if detail else 'unknown content'})"
        raise CheckpointError(
            f"checkpoint {path} refused: it needs {needs}, and loading it could run code"
        ) from error
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from error


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", *, require: Collection[str] = MODEL_KEYS
) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`, without running code from it.

    Args:
        path: The checkpoint file.
        map_location: Passed to ``torch.load``.
        require: Entries the checkpoint must hold; :data:`MODEL_KEYS` rebuild the model.

    Raises:
        CheckpointError: The file is missing, truncated, has extra bytes, fails its checksum, was
            written by an older version, needs Python objects other than tensors and plain data, or
            lacks a required entry (the message names the path).
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    version, payload = _verified_payload(path, path.read_bytes())
    if version == _LEGACY_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} was written by an older stadb-reid with pickled NumPy RNG state;"
            " it cannot be read without allowing code execution"
        )
    state = _unpickle(path, payload, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a stadb-reid checkpoint (it holds a {type(state).__name__})")
    missing = [key for key in require if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(map(repr, missing))}")
    return state


def load_latest_checkpoint(
    path: Path,
    map_location: str | torch.device = "cpu",
    *,
    log: Callable[[str], None] = print,
    require: Collection[str] = RESUME_KEYS,
) -> tuple[dict[str, Any], Path] | None:
    """The newest good checkpoint: ``path``, or its ``*.prev.pt`` copy if ``path`` is damaged.

    Args:
        path: The checkpoint file, e.g. ``OUTPUT/checkpoint.pt``.
        map_location: Passed to ``torch.load``.
        log: Receives a line naming each unusable file that was skipped.
        require: Entries a checkpoint must hold; by default all that resuming training needs.

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
            return load_checkpoint(candidate, map_location, require=require), candidate
        except CheckpointError as error:
            log(f"warning: skipping an unusable checkpoint: {error}")
            problems.append(str(error))
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))
