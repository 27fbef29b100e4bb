"""The manifest of a gallery index: which model, which images, which chunk files, in row order.

``manifest.json`` is plain JSON (never a pickle) and is always replaced atomically, so a killed
``index`` run leaves either the old manifest or the new one. Images are stored with the identity and
camera parsed from their file names when these follow a Market-1501-style convention
(``0002_c1s1_000451_03.jpg``, DukeMTMC's ``0005_c2_f0046985.jpg``, CUHK03-NP's ``0001_c1_1.png``); the
patterns are the dataset adapters' own.

Examples:
    >>> parse_labels("gallery/0002_c3s1_000451_03.jpg"), parse_labels("holiday.jpg")
    ((2, 2), (None, None))
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import IO, Any

from ..data.datasets.cuhk03 import CUHK03_NAME_PATTERN
from ..data.datasets.dukemtmc import DUKEMTMC_NAME_PATTERN
from ..data.datasets.market1501 import MARKET1501_NAME_PATTERN
from ..errors import GalleryIndexError

__all__ = ["FORMAT", "MANIFEST_NAME", "ImageRecord", "IndexManifest", "parse_labels", "write_atomically"]

#: File name of the manifest inside an index folder.
MANIFEST_NAME = "manifest.json"
#: Value of the manifest's ``format`` key; a folder whose manifest lacks it is not an index.
FORMAT = "stadb-reid-gallery-index"
_VERSION = 1
_LABEL_PATTERNS = (MARKET1501_NAME_PATTERN, DUKEMTMC_NAME_PATTERN, CUHK03_NAME_PATTERN)


def parse_labels(path: str | PurePath) -> tuple[int | None, int | None]:
    """Identity and 0-based camera of a Market-1501-style file name, or ``(None, None)``.

    Args:
        path: Image path; only its stem is read.

    Returns:
        ``(pid, camid)`` as the dataset adapters read them (``c1`` is camera 0; ``-1`` junk and ``0``
        distractor identities are kept), or ``(None, None)`` when the name follows no convention.

    Examples:
        >>> parse_labels("0005_c2_f0046985.jpg"), parse_labels("0001_c0_1.png")
        ((5, 1), (None, None))
    """
    stem = PurePath(path).stem
    for pattern in _LABEL_PATTERNS:
        match = pattern.match(stem)
        if match is not None and int(match.group(2)) >= 1:
            return int(match.group(1)), int(match.group(2)) - 1
    return None, None


@dataclass(frozen=True)
class ImageRecord:
    """One gallery image: its absolute path and, when its name tells them, identity and camera."""

    path: str
    pid: int | None = None
    camid: int | None = None

    @classmethod
    def of(cls, path: str | Path) -> ImageRecord:
        """The record of ``path`` with the labels :func:`parse_labels` finds in its name."""
        return cls(str(path), *parse_labels(path))


@dataclass
class IndexManifest:
    """What an index folder holds; ``images[i]`` is row ``i`` of the concatenated chunks.

    Attributes:
        model_path: The model folder the index was built with.
        fingerprint: That model's fingerprint; only embeddings of the same model are comparable.
        embedding_dim: Columns of every chunk.
        flip: Whether the embeddings average each image with its mirror image (queries must match).
        chunks: ``(file name, rows)`` of each chunk, in row order; a chunk whose file is missing is
            planned but not embedded yet.
        images: The images, in row order.
    """

    model_path: str
    fingerprint: str
    embedding_dim: int
    flip: bool
    chunks: list[tuple[str, int]] = field(default_factory=list)
    images: list[ImageRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The manifest as the JSON object written to ``manifest.json``."""
        return {
            "format": FORMAT,
            "version": _VERSION,
            "model": {"path": self.model_path, "fingerprint": self.fingerprint},
            "embedding_dim": self.embedding_dim,
            "flip": self.flip,
            "chunks": [{"file": name, "rows": rows} for name, rows in self.chunks],
            "images": [asdict(record) for record in self.images],
        }

    @classmethod
    def read(cls, path: Path) -> IndexManifest:
        """Read and check ``path``; :class:`GalleryIndexError` names it when anything is off."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GalleryIndexError(f"not a gallery index: {path} is missing", path) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GalleryIndexError(f"damaged gallery index manifest {path}: {error}", path) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GalleryIndexError(f"not a gallery index manifest: {path}", path)
        if data.get("version") != _VERSION:
            raise GalleryIndexError(
                f"unsupported gallery index version {data.get('version')!r} in {path}", path
            )
        try:
            manifest = cls(
                model_path=_typed(data["model"]["path"], str),
                fingerprint=_typed(data["model"]["fingerprint"], str),
                embedding_dim=_typed(data["embedding_dim"], int),
                flip=_typed(data["flip"], bool),
                chunks=[(_typed(c["file"], str), _typed(c["rows"], int)) for c in data["chunks"]],
                images=[
                    ImageRecord(_typed(r["path"], str), _optional_int(r["pid"]), _optional_int(r["camid"]))
                    for r in data["images"]
                ],
            )
        except (KeyError, TypeError) as error:
            raise GalleryIndexError(
                f"damaged gallery index manifest {path}: bad or missing {error}", path
            ) from None
        unsafe = [name for name, _ in manifest.chunks if PurePath(name).name != name or name.startswith(".")]
        if unsafe or sum(rows for _, rows in manifest.chunks) != len(manifest.images):
            raise GalleryIndexError(
                f"damaged gallery index manifest {path}: chunks do not match images", path
            )
        return manifest

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically with this manifest."""
        text = json.dumps(self.to_json(), indent=1)
        write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _typed(value: Any, kind: type) -> Any:
    # bool is an int subclass; a count written as true would otherwise pass.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(repr(value))
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(_typed(value, int))


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through a temporary sibling renamed over it, so no reader sees half a file.

    Args:
        path: The file to create or replace.
        write: Writes the content into the open binary file it is given.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
