"""``synthetic.json``: what the generator records, how a folder is recognised, and its manifest.

The metadata holds the generator's name and format version, the parameters, the image counts,
the cameras and the list of files written (the manifest). A folder is reused when all of these
match; replacing it deletes the manifest's files and nothing else.

Examples:
    >>> _matches({"generator": _GENERATOR, "format_version": _FORMAT_VERSION, "params": {"seed": 0}},
    ...          {"seed": 0})
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stadb_reid.data.synthetic._generated_files import ForeignPathError, remove_generated, walk_generated
from stadb_reid.data.synthetic.plan import _checked_params, _images
from stadb_reid.errors import StaleDatasetError

__all__ = ["METADATA_FILE"]

#: Name of the metadata file written next to the split folders.
METADATA_FILE = "synthetic.json"
# Recorded in synthetic.json to recognise the generator's folders; never change it.
_GENERATOR = "stadb_reid.data.synthetic"
# Bump whenever the drawing changes, so folders written by an older generator are regenerated.
_FORMAT_VERSION = 1


def _read_metadata(root: Path) -> dict[str, Any] | None:
    path = root / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StaleDatasetError(f"cannot read synthetic dataset metadata {path}: {exc}", path) from exc
    return data if isinstance(data, dict) else None


def _matches(metadata: Mapping[str, Any] | None, params: Mapping[str, Any]) -> bool:
    return (
        metadata is not None
        and metadata.get("generator") == _GENERATOR
        and metadata.get("format_version") == _FORMAT_VERSION
        and metadata.get("params") == dict(params)
    )


def _manifest(root: Path, metadata: Mapping[str, Any] | None) -> list[str]:
    """The files the generator wrote into ``root``, relative to it (``synthetic.json`` included)."""
    metadata = metadata if metadata is not None and metadata.get("generator") == _GENERATOR else {}
    files = metadata.get("files")
    if files is None and metadata.get("format_version") == 1:
        # Written before the manifest existed; version 1 names follow from the parameters alone.
        try:
            files = [rel for _, rel, *_ in _images(_checked_params(metadata["params"]))]
        except (KeyError, TypeError, ValueError):
            files = None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise StaleDatasetError(
            f"{root / METADATA_FILE} does not tell which files the generator wrote; "
            f"delete {root} yourself to regenerate it",
            root / METADATA_FILE,
        )
    return [*files, METADATA_FILE]


def _remove_generated(root: Path, metadata: Mapping[str, Any] | None, *, check_only: bool = False) -> None:
    """Delete a generated dataset, or only check it with ``check_only``; nothing if anything else is there."""
    manifest = _manifest(root, metadata)
    try:
        if check_only:
            walk_generated(root, manifest)
        else:
            remove_generated(root, manifest)
    except ForeignPathError as exc:
        raise StaleDatasetError(
            f"{exc.path} was not written by the synthetic generator; refusing to regenerate {root} "
            "(move it elsewhere or choose another root)",
            exc.path,
        ) from None
