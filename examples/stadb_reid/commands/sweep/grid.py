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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ...config import available_recipes
from ...config.limits import CONFIG_LIMITS
from ...config.reading import read_config_file
from ...errors import ConfigError

__all__ = ["BUNDLED_GRID_DIR", "RunSpec", "SweepGrid", "load_grid"]

BUNDLED_GRID_DIR = Path(__file__).resolve().parents[2] / "sweeps"
_GRID_KEYS = {"name", "config", "set", "seeds", "runs", "compare", "recipe", "seed_keys"}
_RUN_KEYS = {"config", "set"}
_RUN_NAME = re.compile(r"[\w-]{1,64}")
_MAX_SEED = CONFIG_LIMITS["seed"]


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

    The file is read as a config file is (:func:`~stadb_reid.config.reading.read_config_file`: UTF-8 YAML,
    no Python tags, no interpolation), and every key is checked for its type and range.

    Raises:
        ConfigError: The file is missing, is not YAML, or a key or value is wrong; the message names it.
    """
    file = _resolve(Path(path))
    container = OmegaConf.to_container(read_config_file(file, "sweep grid"))
    assert isinstance(container, dict)
    content = {str(key): value for key, value in container.items()}
    unknown = sorted(set(content) - _GRID_KEYS)
    if unknown:
        raise ConfigError(f"{file}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_GRID_KEYS))})")
    common_config = _strings(content.get("config", []), f"{file}: config")
    common_set = _settings(content.get("set", []), f"{file}: set")
    seeds = _seeds(content.get("seeds", [0]), file)
    runs_content = content.get("runs")
    if not isinstance(runs_content, dict) or not runs_content:
        raise ConfigError(f"{file}: runs must map run names to {{config: [...], set: [...]}}")
    runs = {}
    for name, run in runs_content.items():
        if not (isinstance(name, str) and _RUN_NAME.fullmatch(name)):
            raise ConfigError(f"{file}: run name {name!r} must be letters, digits, - and _ (at most 64)")
        run = run or {}
        if not isinstance(run, dict) or set(run) - _RUN_KEYS:
            raise ConfigError(f"{file}: runs.{name} takes only config and set")
        config = common_config + _strings(run.get("config", []), f"{file}: runs.{name}.config")
        settings = common_set + _settings(run.get("set", []), f"{file}: runs.{name}.set")
        runs[name] = (config, settings)
    compare = _compare(content.get("compare") or [], runs, file)
    recipe = content.get("recipe")
    if recipe is not None and recipe not in available_recipes():
        raise ConfigError(f"{file}: recipe must be one of {', '.join(available_recipes())}, got {recipe!r}")
    seed_keys = _strings(content.get("seed_keys", []), f"{file}: seed_keys")
    if any("=" in key for key in seed_keys):
        raise ConfigError(
            f"{file}: seed_keys are config keys such as data.options.split_seed, got {seed_keys}"
        )
    name = content.get("name", file.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{file}: name must be a non-empty string, got {name!r}")
    return SweepGrid(name, seeds, runs, compare, recipe, seed_keys, content)


def _seeds(seeds: Any, file: Path) -> tuple[int, ...]:
    # bool is an int in Python: `seeds: [true]` would be run as seed 1 in a folder named seedTrue.
    valid = isinstance(seeds, list) and seeds and all(type(s) is int and 0 <= s <= _MAX_SEED for s in seeds)
    if not valid:
        raise ConfigError(
            f"{file}: seeds must be a non-empty list of non-negative integers (at most {_MAX_SEED}), "
            f"got {seeds!r}"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{file}: seeds must not repeat, got {seeds!r}")
    return tuple(seeds)


def _compare(pairs: Any, runs: dict[str, Any], file: Path) -> tuple[tuple[str, str], ...]:
    if not isinstance(pairs, list):
        raise ConfigError(f"{file}: compare must be a list of pairs of run names, got {pairs!r}")
    for pair in pairs:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(p in runs for p in pair) and pair[0] != pair[1]
        ):
            raise ConfigError(
                f"{file}: compare entries are pairs of run names (two different ones), got {pair!r}"
            )
    return tuple((str(a), str(b)) for a, b in pairs)


def _resolve(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"sweep grid {str(path)!r} is a directory, not a YAML file")
    if path.exists():  # a FIFO or a device would block or never end
        raise ConfigError(f"sweep grid {str(path)!r} is not a regular file")
    bundled = BUNDLED_GRID_DIR / f"{path.stem}.yaml"
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    available = ", ".join(sorted(p.stem for p in BUNDLED_GRID_DIR.glob("*.yaml")))
    raise ConfigError(f"sweep grid not found: {path} (bundled grids: {available})")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(f"{where} must be a list of strings (none empty), got {value!r}")
    return tuple(value)


def _settings(value: Any, where: str) -> tuple[str, ...]:
    settings = _strings(value, where)
    for setting in settings:
        key, separator, _ = setting.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{where}: expected KEY=VALUE, got {setting!r}")
    return settings
