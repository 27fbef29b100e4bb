"""Hostile-input checks: exit 2, one line naming the culprit, no traceback, no side effects."""

import os
import sys
from pathlib import Path

import pytest

from stadb_reid.cli import main

Snapshot = dict[str, tuple[str, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every entry below ``root`` (links not followed): kind, size and modification time."""
    entries: Snapshot = {}
    for folder, names, files in os.walk(root):
        for name in [*names, *files]:
            path = Path(folder, name)
            status = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            size = 0 if kind == "dir" else status.st_size
            entries[str(path.relative_to(root))] = (kind, size, status.st_mtime_ns)
    return entries


def run_cli(
    arguments: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[object, str, str]:
    """Run ``stadb-reid ARGUMENTS`` in-process as the console script does: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["stadb-reid", *arguments])
    with pytest.raises(SystemExit) as stopped:
        main()
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def assert_refused(code: object, out: str, err: str, *culprits: str) -> str:
    """Exit 2 and one ``error:`` line on stderr naming every one of ``culprits``; returns the line."""
    assert "Traceback" not in out + err, err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for culprit in culprits:
        assert culprit in lines[0], (culprit, lines[0])
    return lines[0]


def refused_without_side_effects(
    arguments: list[str],
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *culprits: str,
    allowed: tuple[str, ...] = (),
) -> str:
    """Run the command from ``root`` and assert :func:`assert_refused` and an unchanged ``root``.

    Args:
        allowed: Entries (relative to ``root``) the command may create: the run's own files.
    """
    monkeypatch.chdir(root)  # anything written to a relative path lands in the snapshot
    before = snapshot(root)
    line = assert_refused(*run_cli(arguments, monkeypatch, capsys), *culprits)
    after = {key: value for key, value in snapshot(root).items() if not key.startswith(allowed)}
    assert after == {key: value for key, value in before.items() if not key.startswith(allowed)}
    return line
