"""Reading YAML config text as untrusted input: config files, ``--set`` overrides, sweep grids.

A config file must be UTF-8 YAML (no Python tags; OmegaConf's loader also bounds nesting and alias
expansion) holding a mapping of config keys, and no value, in a file or an override, may be an
OmegaConf interpolation: ``${oc.env:HOME}`` would read the environment, and a value means what it
says. Each failure is a :class:`ConfigError` in one line naming the file or the override.
"""

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "read_bounded", "read_config_file"]

#: Largest config file read (bytes): a config is a few dozen lines, so anything larger is a mistake.
MAX_CONFIG_BYTES = 1 << 20
# Python's names of a top-level scalar's type, in words.
_KINDS = {"int": "a number", "float": "a number", "bool": "a boolean"}


def read_bounded(path: Path, limit: int, where: str, kind: str) -> bytes:
    """The bytes of ``path``, reading at most ``limit`` + 1 of them (a huge file is never loaded).

    Raises:
        ConfigError: ``where`` cannot be read, or is larger than ``limit`` (then it is not ``kind``).
    """
    try:
        with path.open("rb") as file:
            raw = file.read(limit + 1)
    except OSError as error:
        raise ConfigError(f"cannot read {where}: {error.strerror}") from None
    if len(raw) > limit:
        raise ConfigError(f"{where} is larger than {limit >> 20} MiB: not {kind}")
    return raw


def read_config_file(path: Path, what: str = "config file") -> DictConfig:
    """The mapping a YAML config file holds, every value as written (no interpolation).

    Args:
        path: The file.
        what: What the file is, for the messages (``"sweep grid"``...).

    Raises:
        ConfigError: Naming ``path``: unreadable, over :data:`MAX_CONFIG_BYTES`, not UTF-8, not YAML
            (a Python tag, nesting or aliases past OmegaConf's limits), not a mapping, empty (only
            comments; ``{}`` is a mapping without settings), or holding an interpolation.
    """
    where = f"{what} {str(path)!r}"
    raw = read_bounded(path, MAX_CONFIG_BYTES, where, "a config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} is not UTF-8 text (byte {error.start})") from None
    content = _parse_yaml(text, where)
    if not isinstance(content, DictConfig):
        raise ConfigError(f"{where} must hold a mapping of config keys, got a list")
    if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
        # An explicit ``{}`` is a file without settings; an empty one is usually a failed copy.
        raise ConfigError(f"{where} is empty (write {{}} for a file without settings)")
    _refuse_interpolation(content, f"{where}: ")
    return content


def _parse_yaml(text: str, where: str) -> DictConfig | ListConfig:
    try:
        return OmegaConf.load(io.StringIO(text))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = (getattr(error, "problem", None) or str(error).splitlines()[0]).split(". ")[0]
        raise ConfigError(f"{where} is not valid YAML: {problem}{at}") from None
    except OSError as error:  # OmegaConf's word for a top-level scalar: "Invalid loaded object type: int"
        kind = str(error).rpartition(":")[2].strip()
        raise ConfigError(
            f"{where} must hold a mapping of config keys, got {_KINDS.get(kind, kind)}"
        ) from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"{where}: {str(error).splitlines()[0]}") from None


def _interpolations(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[str]:
    keys: Sequence[Any] = range(len(node)) if isinstance(node, ListConfig) else list(node.keys())
    for key in keys:
        path = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}{'.' if prefix else ''}{key}"
        if OmegaConf.is_interpolation(node, key):
            yield path
            continue
        child = node[key]
        if isinstance(child, DictConfig | ListConfig):
            yield from _interpolations(child, path)


def _refuse_interpolation(content: DictConfig | ListConfig, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the first interpolation in ``content``, after ``where``."""
    found = next(_interpolations(content), None)
    if found is not None:
        raise ConfigError(
            f"{where}{found} is an interpolation (${{...}}); config values are taken as written, "
            "so write the value itself"
        )


def _override_layer(setting: str) -> DictConfig:
    """One ``KEY=VALUE`` override as a config layer; errors name the override."""
    where = f"override {setting!r}"
    try:
        layer = OmegaConf.from_dotlist([setting])
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: the value is not valid YAML: {problem}") from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"{where}: {str(error).splitlines()[0]}") from None
    _refuse_interpolation(layer, f"{where}: ")
    return layer
