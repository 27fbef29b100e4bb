"""A sweep's grid: named runs (config files and overrides) times seeds, read from a YAML file.

Example grid::

    name: table6_cuhk03_pair1
    config: [cuhk03_labeled]              # every run starts from these files...
    set: ["data.height=64", "optim.epochs=12"]   # ...and these overrides
    seeds: [0, 1, 2]
    runs:                                  # then adds its own
      global: {config: [ablation_global]}
      bdb: {config: [bdb]}
      stadb: {}
    compare: [[stadb, global], [stadb, bdb]]   # paired differences to report
    seed_keys: [data.options.split_seed]   # optional: config keys set to the run's seed as well

``seed_keys`` lets the seed choose more than the initialisation and data order: with VIPeR's
``data.options.split_seed`` every seed is also another train/test split (the 10-split protocol), and
a paired difference then compares two networks on the same split.

A run's command line is an ordinary ``stadb-reid train``, so any run can be repeated by hand.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError

__all__ = ["BUNDLED_GRID_DIR", "RunSpec", "SweepGrid", "load_grid"]

BUNDLED_GRID_DIR = Path(__file__).resolve().parents[2] / "sweeps"
_GRID_KEYS = {"name", "config", "set", "seeds", "runs", "compare", "recipe", "seed_keys"}
_RUN_KEYS = {"config", "set"}


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid: a named setting at one seed."""

    name: str
    seed: int
    config: tuple[str, ...]
    settings: tuple[str, ...]
    recipe: str | None = None
    seed_keys: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        """The run's folder below the sweep's output folder."""
        return f"{self.name}/seed{self.seed}"

    def train_arguments(self, output_dir: Path) -> list[str]:
        """``stadb-reid train`` arguments (without the program) that perform this run."""
        arguments = ["train", "--no-progress", "--resume", "--output-dir", str(output_dir / self.folder)]
        if self.recipe is not None:
            arguments += ["--recipe", self.recipe]
        for file in self.config:
            arguments += ["--config", file]
        for setting in (*self.settings, *(f"{key}={self.seed}" for key in self.seed_keys)):
            arguments += ["--set", setting]
        return [*arguments, "--seed", str(self.seed)]


@dataclass(frozen=True)
class SweepGrid:
    """Named settings, each run at every seed; ``compare`` lists pairs (a, b) to report a - b for."""

    name: str
    seeds: tuple[int, ...]
    runs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    compare: tuple[tuple[str, str], ...] = ()
    recipe: str | None = None
    seed_keys: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)

    def specs(self, recipe: str | None = None) -> list[RunSpec]:
        """Every run, seed-major: the first seed of every setting comes before any second seed."""
        chosen = recipe if recipe is not None else self.recipe
        return [
            RunSpec(name, seed, config, settings, chosen, self.seed_keys)
            for seed in self.seeds
            for name, (config, settings) in self.runs.items()
        ]


def load_grid(path: str | Path) -> SweepGrid:
    """Read and check a grid file, or a bundled grid by name (``table6_cuhk03_pair1``).

    Raises:
        ConfigError: The file is missing, is not YAML, or a key or value is wrong; the message names it.
    """
    file = _resolve(Path(path))
    try:
        content = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{file}: cannot read the sweep grid ({str(error).splitlines()[0]})") from error
    if not isinstance(content, dict):
        raise ConfigError(f"{file}: a sweep grid is a mapping with keys {', '.join(sorted(_GRID_KEYS))}")
    unknown = sorted(set(content) - _GRID_KEYS)
    if unknown:
        raise ConfigError(f"{file}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_GRID_KEYS))})")
    common_config = _strings(content.get("config", []), f"{file}: config")
    common_set = _strings(content.get("set", []), f"{file}: set")
    seeds = content.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ConfigError(f"{file}: seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{file}: seeds must not repeat, got {seeds!r}")
    runs_content = content.get("runs")
    if not isinstance(runs_content, dict) or not runs_content:
        raise ConfigError(f"{file}: runs must map run names to {{config: [...], set: [...]}}")
    runs = {}
    for name, run in runs_content.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{file}: run name {name!r} must be letters, digits, - and _")
        run = run or {}
        if not isinstance(run, dict) or set(run) - _RUN_KEYS:
            raise ConfigError(f"{file}: runs.{name} takes only config and set")
        config = common_config + _strings(run.get("config", []), f"{file}: runs.{name}.config")
        settings = common_set + _strings(run.get("set", []), f"{file}: runs.{name}.set")
        runs[name] = (config, settings)
    compare = []
    for pair in content.get("compare", []) or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in runs for p in pair)):
            raise ConfigError(f"{file}: compare entries are pairs of run names, got {pair!r}")
        compare.append((str(pair[0]), str(pair[1])))
    recipe = content.get("recipe")
    if recipe is not None and not isinstance(recipe, str):
        raise ConfigError(f"{file}: recipe must be a name, got {recipe!r}")
    seed_keys = _strings(content.get("seed_keys", []), f"{file}: seed_keys")
    name = content.get("name", file.stem)
    return SweepGrid(str(name), tuple(seeds), runs, tuple(compare), recipe, seed_keys, content)


def _resolve(path: Path) -> Path:
    if path.is_file():
        return path
    bundled = BUNDLED_GRID_DIR / f"{path.stem}.yaml"
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    available = ", ".join(sorted(p.stem for p in BUNDLED_GRID_DIR.glob("*.yaml")))
    raise ConfigError(f"sweep grid not found: {path} (bundled grids: {available})")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)
