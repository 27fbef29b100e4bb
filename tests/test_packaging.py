"""The two distributions of the repository: stadb-layers (the library) and stadb-reid (the trainer).

The wheels are built from copies of the sources, offline and without build isolation (setuptools comes
with the ``dev`` extra), so the checkout gets no ``build/`` or ``*.egg-info`` folders.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "stadb_reid"
BUILD_LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run(
        [*command, "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def metadata(wheel: zipfile.ZipFile, file: str) -> str:
    (path,) = [name for name in wheel.namelist() if name.endswith(f".dist-info/{file}")]
    return wheel.read(path).decode()


def test_library_wheel_holds_the_layers_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT / "stadb_layers", source / "stadb_layers", ignore=BUILD_LEFTOVERS)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel = build_wheel(source, tmp_path / "dist")
    names = wheel.namelist()
    assert {name.split("/")[0] for name in names} == {"stadb_layers", "stadb_layers-0.1.0.dist-info"}
    assert not [name for name in names if "stadb_reid" in name]
    assert "stadb_layers/py.typed" in names and "stadb_layers/checks.py" in names
    assert not [name for name in names if name.endswith("entry_points.txt")]  # no console script
    lines = metadata(wheel, "METADATA").splitlines()
    requires = [line for line in lines if line.startswith("Requires-Dist:")]
    assert [line for line in requires if "extra ==" not in line] == [
        "Requires-Dist: torch>=2.4",
        "Requires-Dist: einops>=0.7",
    ]


def test_trainer_wheel_holds_the_trainer_its_data_and_its_command(tmp_path: Path) -> None:
    source = tmp_path / "stadb_reid"
    shutil.copytree(TRAINER, source, ignore=BUILD_LEFTOVERS)
    wheel = build_wheel(source, tmp_path / "dist")
    names = set(wheel.namelist())
    modules = {f"stadb_reid/{p.relative_to(TRAINER).as_posix()}" for p in TRAINER.rglob("*.py")}
    data = {
        f"stadb_reid/{p.relative_to(TRAINER).as_posix()}"
        for pattern in ("configs/**/*.yaml", "sweeps/*.yaml", "py.typed")
        for p in TRAINER.glob(pattern)
    }
    assert modules and data and modules | data <= names
    assert not [name for name in names if name.startswith("stadb_layers")]
    entry_points = metadata(wheel, "entry_points.txt")
    assert "[console_scripts]\nstadb-reid = stadb_reid.cli:main" in entry_points
    assert "Requires-Dist: stadb-layers==0.1.0" in metadata(wheel, "METADATA").splitlines()
