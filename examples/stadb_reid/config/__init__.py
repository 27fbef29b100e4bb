"""Training configuration: typed dataclasses, filled from YAML files, recipes and overrides.

The schema is :mod:`.schema`; :mod:`.files` reads the bundled configs and recipes and merges them;
:mod:`.overrides` changes settings by dotted key, the one way ``--set`` and every command's flags do.
OmegaConf merges the YAML files onto the dataclass schema, so a misspelt key or a wrong type in a
config file is an error that names the key, not a silently ignored setting.
"""

from ..errors import ConfigError
from .files import (
    CONFIG_DIR,
    DEFAULT_RECIPE,
    RECIPE_DIR,
    available_recipes,
    bundled_configs,
    config_files_set,
    config_to_dict,
    flatten_config,
    load_config,
    resolve_config_path,
)
from .overrides import FLAG_KEYS, Overrides
from .schema import (
    AmpMode,
    AttentionType,
    CBAMConfig,
    Choice,
    ClassifierInit,
    Config,
    DataConfig,
    DistanceMetric,
    EpochMode,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    Variant,
)

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_RECIPE",
    "FLAG_KEYS",
    "RECIPE_DIR",
    "AmpMode",
    "AttentionType",
    "CBAMConfig",
    "Choice",
    "ClassifierInit",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistanceMetric",
    "EpochMode",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "Overrides",
    "Variant",
    "available_recipes",
    "bundled_configs",
    "config_files_set",
    "config_to_dict",
    "flatten_config",
    "load_config",
    "resolve_config_path",
]
