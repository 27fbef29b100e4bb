"""Changing settings: dotted config keys, the one way every command changes a setting.

``--set data.root=DIR``, a command's convenience flag (``--data-root DIR``, mapped to its key by
:data:`FLAG_KEYS`) and a library call's ``{"data.root": "DIR"}`` all become one :class:`Overrides`:
dotted keys and their values, applied in order (a later one wins) onto the settings underneath, those
of the recipe and config files (:func:`~stadb_reid.config.load_config`) or of a checkpoint.

Examples:
    >>> from stadb_reid.config import Config
    >>> overrides = Overrides.from_flags(device="cpu", epochs=None) | Overrides.parse(["optim.epochs=3"])
    >>> overrides
    Overrides(assignments=(('device', 'cpu'), ('optim.epochs', 3)))
    >>> config = overrides.applied_to(Config())
    >>> config.device, config.optim.epochs
    ('cpu', 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from .reading import _override_layer, _refuse_interpolation
from .schema import Config

__all__ = ["FLAG_KEYS", "Overrides", "config_error"]

#: The commands' convenience flags (their names, ``--data-root`` as ``data_root``) and the dotted
#: config key each one sets: ``--data-root DIR`` is ``--set data.root=DIR``.
FLAG_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "dataset": "data.dataset",
        "data_root": "data.root",
        "height": "data.height",
        "width": "data.width",
        "num_identities": "data.num_identities",
        "num_instances": "data.num_instances",
        "pretrained": "model.pretrained",
        "weights": "model.weights",
        "variant": "model.variant",
        "attention": "model.attention",
        "alpha": "model.alpha",
        "rho": "model.rho",
        "epochs": "optim.epochs",
        "eval_every": "eval.every",
        "ap_at": "eval.ap_at",
        "flip": "eval.flip",
        "rerank": "eval.rerank",
        "output_dir": "output_dir",
        "device": "device",
        "seed": "seed",
        "amp": "amp",
        "channels_last": "channels_last",
        "compile": "compile",
        "deterministic": "deterministic",
    }
)
_DATASET, _OPTIONS = FLAG_KEYS["dataset"], "data.options"


def config_error(error: OmegaConfBaseException) -> ConfigError:
    """OmegaConf's error as one line that names the key, e.g. ``model.alpha: Value 'x' ...``."""
    where = f"{error.full_key}: " if getattr(error, "full_key", None) else ""
    return ConfigError(where + str(error).splitlines()[0])


@dataclass(frozen=True)
class Overrides:
    """Settings to change: dotted config keys and their values, in order; a later one wins.

    A mapping value is merged into the mapping already there (as ``--set`` does); ``None`` sets
    ``null``. Naming a dataset other than the one underneath drops that one's ``data.options``, which
    belong to it, before the assignments apply.

    Attributes:
        assignments: ``(dotted key, value)`` pairs, e.g. ``(("data.root", "data/market"),)``.
    """

    assignments: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, values: Overrides | Mapping[str, Any]) -> Overrides:
        """``values`` as overrides: a mapping of dotted keys to values, e.g. ``{"optim.epochs": 10}``."""
        return values if isinstance(values, Overrides) else cls(tuple(values.items()))

    @classmethod
    def parse(cls, settings: Iterable[str]) -> Overrides:
        """``--set`` pairs ``KEY=VALUE``, each VALUE read as YAML (``optim.milestones=[20, 30]``).

        Raises:
            ConfigError: A pair without ``=`` or without a key, a value that is not YAML, or an
                interpolation (``${...}``), naming the pair.
        """
        assignments = []
        for pair in settings:
            key, separator, _ = pair.partition("=")
            if not separator or not key.strip():
                raise ConfigError(f"expected KEY=VALUE, got {pair!r}")
            layer = _override_layer(pair)  # YAML as in config files (3e-4 is a number), no ${...}
            value = OmegaConf.select(layer, key.strip())
            if isinstance(value, DictConfig | ListConfig):
                value = OmegaConf.to_container(value)
            assignments.append((key.strip(), value))
        return cls(tuple(assignments))

    @classmethod
    def from_flags(cls, **flags: Any) -> Overrides:
        """The command line's convenience flags, each set to the key :data:`FLAG_KEYS` names.

        A flag left ``None`` (not given) changes nothing; a path becomes its string.

        Raises:
            TypeError: A flag :data:`FLAG_KEYS` does not list.
        """
        unknown = sorted(set(flags) - set(FLAG_KEYS))
        if unknown:
            raise TypeError(f"not a convenience flag of FLAG_KEYS: {', '.join(unknown)}")
        return cls(
            tuple(
                (FLAG_KEYS[flag], str(value) if isinstance(value, PathLike) else value)
                for flag, value in flags.items()
                if value is not None
            )
        )

    def __or__(self, other: Overrides) -> Overrides:
        """Both, ``other``'s applied last (so it wins)."""
        return Overrides(self.assignments + other.assignments)

    def __bool__(self) -> bool:
        return bool(self.assignments)

    @property
    def dataset(self) -> str | None:
        """The dataset these overrides name (``data.dataset``), if any."""
        named = [value for key, value in self.assignments if key == _DATASET]
        return str(named[-1]) if named and named[-1] is not None else None

    def applied_to(self, config: Config) -> Config:
        """A new config: ``config`` with these settings changed (``config`` itself if there are none).

        Raises:
            ConfigError: An unknown key or a value of the wrong type (naming the key).
        """
        if not self.assignments:
            return config
        try:
            node = OmegaConf.structured(config)
            if self.dataset is not None and self.dataset.lower() != config.data.dataset.lower():
                OmegaConf.update(node, _OPTIONS, {}, merge=False)
            for key, value in self.assignments:
                OmegaConf.update(node, key, value, merge=True)
            _refuse_interpolation(node)  # a flag's or a mapping's value is taken as written too
            changed = OmegaConf.to_object(node)
        except OmegaConfBaseException as error:
            raise config_error(error) from error
        assert isinstance(changed, Config)
        return changed
