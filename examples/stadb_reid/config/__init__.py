"""Training configuration: typed dataclasses, filled from YAML files, recipes and overrides.

The schema is :mod:`.schema`; :mod:`.files` reads the bundled configs and recipes and merges them;
:mod:`.overrides` changes settings by dotted key, the one way ``--set`` and every command's flags do.
OmegaConf merges the YAML files onto the dataclass schema, so a misspelt key or a wrong type in a
config file is an error that names the key, not a silently ignored setting. :mod:`.reading` reads
files and overrides as untrusted input; :mod:`.limits` bounds the values that would otherwise
exhaust the machine.
"""

from .files import available_recipes, bundled_configs, config_to_dict, load_config
from .overrides import Overrides
from .schema import Config, Variant

__all__ = [
    "Config",
    "Overrides",
    "Variant",
    "available_recipes",
    "bundled_configs",
    "config_to_dict",
    "load_config",
]
