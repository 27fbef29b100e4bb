"""Loading a configuration: bundled config files and recipes, merged with overrides onto the schema.

A run's settings are, in order: the schema's defaults (:mod:`.schema`), a recipe, the config files
(later ones win), then the overrides (:class:`~.overrides.Overrides`: ``--set`` and the commands' flags).
Files and overrides are read as untrusted input (:mod:`.reading`).
"""

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from .overrides import Overrides, config_error
from .reading import read_config_file
from .schema import Config

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_RECIPE",
    "RECIPE_DIR",
    "available_recipes",
    "bundled_configs",
    "config_files_set",
    "config_to_dict",
    "flatten_config",
    "load_config",
    "resolve_config_path",
]

CONFIG_DIR = Path(__file__).parents[1] / "configs"
#: Where ``--recipe NAME`` finds ``NAME.yaml``: the settings every run starts from.
RECIPE_DIR = CONFIG_DIR / "recipes"
#: The recipe of a command line without ``--recipe``: the paper, the authors' code where it is silent.
DEFAULT_RECIPE = "paper"
# Folders searched, in order, for a bare ``--config NAME``: the dataset configs, then the ablations.
_CONFIG_SEARCH_PATH = (CONFIG_DIR, CONFIG_DIR / "ablations")


def bundled_configs() -> list[str]:
    """Names accepted by ``--config``: the dataset configs, then the ablation overlays, each sorted.

    Examples:
        >>> names = bundled_configs()
        >>> names.index("market1501") < names.index("bdb"), "paper" in names
        (True, False)
    """
    return [name for folder in _CONFIG_SEARCH_PATH for name in sorted(p.stem for p in folder.glob("*.yaml"))]


def resolve_config_path(path: str | Path) -> Path:
    """A config path as given, or the name of a bundled config such as ``market1501`` or ``bdb``.

    A bare name is looked up in ``configs/`` (datasets and the demo), then ``configs/ablations/``.
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory, not a YAML file")
    if candidate.exists():  # a FIFO or a device would block or never end
        raise ConfigError(f"config file {str(path)!r} is not a regular file")
    if candidate.parent == Path("."):
        name = candidate.name.removesuffix(".yaml")  # not .stem: "rho_0.5" names rho_0.5.yaml
        for folder in _CONFIG_SEARCH_PATH:
            if (folder / f"{name}.yaml").is_file():
                return folder / f"{name}.yaml"
    raise ConfigError(f"config file not found: {path} (bundled configs: {', '.join(bundled_configs())})")


def available_recipes() -> list[str]:
    """Names accepted by ``--recipe``.

    Examples:
        >>> available_recipes()
        ['defaults', 'paper', 'reference']
    """
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def _recipe_layers(name: str) -> list[Any]:
    """The YAML contents of recipe ``name``, the recipe it ``extends`` (if any) first."""
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name!r}: expected {' or '.join(available_recipes())}")
    content = read_config_file(path)
    # ``extends: reference`` keeps each value in one file: the paper recipe lists only where the
    # paper's text departs from the authors' code.
    base = content.pop("extends", None)
    return [*(_recipe_layers(str(base)) if base is not None else []), content]


def load_config(
    files: Sequence[str | Path] | None = None,
    overrides: Overrides | Mapping[str, Any] | None = None,
    dotlist: Sequence[str] | None = None,
    *,
    recipe: str | None = None,
) -> Config:
    """Merge a recipe, YAML files (later ones win), ``overrides``, then ``dotlist`` onto the defaults.

    Args:
        files: Paths of YAML files, or names of bundled configs (``"market1501"``, ``"demo_cpu"``...).
        overrides: Dotted keys to values, e.g. ``{"optim.epochs": 10}``, or :class:`Overrides`.
        dotlist: ``--set`` strings ``KEY=VALUE`` with YAML values, e.g. ``["optim.milestones=[20, 30]"]``,
            applied after ``overrides`` (see :meth:`Overrides.parse`).
        recipe: A bundled recipe (``"paper"``, ``"reference"``, see :func:`available_recipes`)
            merged first, under the files; ``None`` for the schema's defaults alone (the command
            line's default is :data:`DEFAULT_RECIPE`).

    Raises:
        ConfigError: For a missing, unreadable or malformed file (see :func:`read_config_file`), a
            malformed override, an unknown recipe or key, a value of the wrong type, or an
            interpolation anywhere.

    Examples:
        >>> config = load_config(["market1501"], {"optim.epochs": 3})
        >>> config.data.dataset, config.optim.epochs, config.model.alpha
        ('market1501', 3, 0.8)
    """
    merged = OmegaConf.structured(Config)
    layers = [(f"recipe {recipe!r}", layer) for layer in _recipe_layers(recipe)] if recipe is not None else []
    for path in (resolve_config_path(file) for file in files or []):
        layers.append((f"config file {str(path)!r}", read_config_file(path)))
    for where, layer in layers:
        merged = _merged(merged, layer, where)
    try:
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        raise config_error(error) from error
    assert isinstance(config, Config)
    return (Overrides.of(overrides or {}) | Overrides.parse(dotlist or [])).applied_to(config)


def _merged(base: DictConfig, layer: DictConfig, where: str) -> DictConfig:
    """``layer`` merged onto ``base``; an error names ``where`` the layer came from and the key."""
    try:
        merged = OmegaConf.merge(base, layer)
    except OmegaConfBaseException as error:
        raise ConfigError(f"{where}: {config_error(error)}") from error
    assert isinstance(merged, DictConfig)
    return merged


def config_files_set(files: Sequence[str | Path] | None, key: str) -> bool:
    """Whether any of the YAML ``files`` (paths or bundled names) sets the dotted ``key``.

    Examples:
        >>> config_files_set(["market1501"], "data.dataset"), config_files_set(["bdb"], "data.dataset")
        (True, False)
    """
    loaded = [read_config_file(resolve_config_path(file)) for file in files or []]
    try:
        return any(OmegaConf.select(content, key) is not None for content in loaded)
    except OmegaConfBaseException as error:
        raise ConfigError(str(error).splitlines()[0]) from error


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict of a config, for JSON metrics and checkpoints."""
    plain = _without_enums(OmegaConf.to_container(OmegaConf.structured(config)))
    assert isinstance(plain, dict)
    return plain


def _without_enums(value: Any) -> Any:
    # Plain strings, so the dict goes into JSON and into checkpoints read with weights_only=True.
    if isinstance(value, dict):
        return {str(key): _without_enums(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_enums(item) for item in value]
    return value.value if isinstance(value, Enum) else value


def flatten_config(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` to ``{"a.b": 1}``; dict-valued leaves such as ``data.options`` stay whole."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict) and key != "options":
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
