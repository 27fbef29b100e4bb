"""Safe removal of a generated folder, and of the temporary folders of killed generations.

A generator that replaces its own output must never delete a user's file. It keeps a manifest
(the relative paths of the files it wrote), and :func:`remove_generated` deletes exactly those
files, then the folders holding them once they are empty. It first walks the whole folder
without following symbolic links and refuses, deleting nothing, at the first path that is not
in the manifest: a user's file or folder, or a symbolic link (even one that replaces a listed
file or folder, so nothing is ever deleted through a link).

Generation writes into a temporary sibling folder ``.<name>.tmp-<pid>-<host>-<random>`` that is
renamed into place at the end. A killed process leaves it behind; :func:`remove_stale_temp_dirs`
removes such a folder once its process is gone (or after a day), never one still being written.
The owner is part of the name, which :func:`tempfile.mkdtemp` creates atomically, so no folder
is ever seen without its owner.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Collection
from pathlib import Path, PurePosixPath

__all__ = [
    "STALE_TEMP_AGE_S",
    "ForeignPathError",
    "make_temp_dir",
    "remove_generated",
    "remove_stale_temp_dirs",
    "temp_prefix",
    "walk_generated",
]

#: Age after which any temporary folder counts as abandoned, even when its owner cannot be checked
#: (another host, or made before owners were recorded); a generation takes minutes at most.
STALE_TEMP_AGE_S = 24 * 3600.0
# What follows the prefix: "<pid>-<host tag>-" (absent in older folders), then mkdtemp's letters.
_TEMP_SUFFIX = re.compile(r"(?:(\d+)-([0-9a-f]{8})-)?[a-z0-9_]+")


class ForeignPathError(Exception):
    """A path inside a generated folder that is not in its manifest (``path`` names it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} was not written by the generator")
        self.path = path


def walk_generated(root: Path, manifest: Collection[str]) -> tuple[list[Path], list[Path]]:
    """List the files and folders under ``root`` after checking that all of them are generated.

    Args:
        root: A real folder (not a symbolic link).
        manifest: Relative POSIX paths of the generated files; their parent folders count as
            generated too. Listed files that are missing are fine.

    Returns:
        The listed files found, and the folders below ``root``, deepest first.

    Raises:
        ForeignPathError: At the first path (in sorted order) that is neither a listed regular
            file nor a folder of one; nothing is deleted.
    """
    listed = set(manifest)
    folders = {str(parent) for rel in listed for parent in PurePosixPath(rel).parents} - {"."}
    found_files: list[Path] = []
    found_folders: list[Path] = []

    def visit(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            ordered = sorted(entries, key=lambda entry: entry.name)
        for entry in ordered:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False) and rel in folders:
                visit(Path(entry.path), rel + "/")
                found_folders.append(Path(entry.path))  # after its content: deepest first
            elif entry.is_file(follow_symlinks=False) and rel in listed:
                found_files.append(Path(entry.path))
            else:
                raise ForeignPathError(Path(entry.path))

    visit(root, "")
    return found_files, found_folders


def remove_generated(root: Path, manifest: Collection[str]) -> None:
    """Delete ``root`` if it holds only generated files (see :func:`walk_generated`).

    Folders are removed with ``rmdir``, so a file created after the check stops the removal
    instead of being deleted. Paths already gone (another process removing the same folder)
    are skipped.

    Args:
        root: A real folder (not a symbolic link).
        manifest: Relative POSIX paths of the generated files.

    Raises:
        ForeignPathError: ``root`` holds something else; nothing was deleted.
        OSError: A folder could not be removed.
    """
    files, folders = walk_generated(root, manifest)
    for file in files:
        file.unlink(missing_ok=True)
    for folder in [*folders, root]:
        with contextlib.suppress(FileNotFoundError):
            folder.rmdir()


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def temp_prefix(root: Path, pid: int | None = None) -> str:
    """Name prefix of the temporary folders of ``root`` made by process ``pid`` on this host.

    Args:
        root: The folder being generated.
        pid: Owner process id; the current process by default.

    Returns:
        ``.<name>.tmp-<pid>-<host tag>-``.
    """
    return f".{root.name}.tmp-{os.getpid() if pid is None else pid}-{_host_tag()}-"


def make_temp_dir(root: Path) -> Path:
    """Create an empty temporary folder beside ``root``, owned by this process.

    Args:
        root: The folder being generated (its parent must exist).

    Returns:
        The new folder.
    """
    return Path(tempfile.mkdtemp(prefix=temp_prefix(root), dir=root.parent))


def _alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; not a pid at all
        return True
    return True


def remove_stale_temp_dirs(root: Path, max_age_s: float = STALE_TEMP_AGE_S) -> None:
    """Delete the temporary folders of ``root`` left behind by killed generations.

    A folder made on this host is stale once its owner process is gone, and any folder once it
    is older than ``max_age_s`` (its owner on another host, or not recorded, cannot be checked).
    Other names, files and symbolic links are never touched.

    Args:
        root: The folder being generated.
        max_age_s: Age in seconds after which an unverifiable folder counts as abandoned.
    """
    prefix = f".{root.name}.tmp-"
    try:
        with os.scandir(root.parent) as entries:
            candidates = [e for e in entries if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)]
    except OSError:  # no parent yet, or one we may not list: nothing to clean
        return
    host = _host_tag()
    for entry in candidates:
        match = _TEMP_SUFFIX.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        pid, owner_host = match.groups()
        dead = pid is not None and owner_host == host and not _alive(int(pid))
        try:
            # The age also covers a pid reused by an unrelated process since the owner died.
            old = time.time() - entry.stat(follow_symlinks=False).st_mtime > max_age_s
        except FileNotFoundError:  # renamed into place or removed by another process meanwhile
            continue
        if dead or old:
            shutil.rmtree(entry.path, ignore_errors=True)  # best effort: a leftover harms nothing
