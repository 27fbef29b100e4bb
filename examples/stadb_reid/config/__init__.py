"""Training configuration: typed dataclasses, filled from YAML files, recipes and overrides.

The schema is :mod:`.schema`; :mod:`.files` reads the bundled configs and recipes and merges them;
:mod:`.overrides` changes settings by dotted key, the one way ``--set`` and every command's flags do.
OmegaConf merges the YAML files onto the dataclass schema, so a misspelt key or a wrong type in a
config file is an error that names the key, not a silently ignored setting. :mod:`.reading` reads
files and overrides as untrusted input; :mod:`.limits` bounds the values that would otherwise
exhaust the machine.
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
from .limits import (
    CONFIG_LIMITS,
    MAX_BATCH_IMAGES,
    MAX_BATCH_PIXELS,
    MAX_JOBS,
    MAX_THREADS,
    check_config_limits,
    check_parallelism,
)
from .overrides import FLAG_KEYS, Overrides
from .reading import MAX_CONFIG_BYTES, read_config_file
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
    "CONFIG_LIMITS",
    "DEFAULT_RECIPE",
    "FLAG_KEYS",
    "MAX_BATCH_IMAGES",
    "MAX_BATCH_PIXELS",
    "MAX_CONFIG_BYTES",
    "MAX_JOBS",
    "MAX_THREADS",
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
    "check_config_limits",
    "check_parallelism",
    "config_files_set",
    "config_to_dict",
    "flatten_config",
    "load_config",
    "read_config_file",
    "resolve_config_path",
]
