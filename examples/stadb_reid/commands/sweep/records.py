"""Reading a finished run's ``record.json`` back, as untrusted input: the report trusts nothing unchecked.

A record is written by the sweep itself, but it lives in a folder the user can edit, copy or damage,
and the report is built from it alone (also under ``--report-only``). :func:`load_record` refuses a
file that is not UTF-8 JSON, not an object, of another run, or missing a key the report reads or
holding it with the wrong type, and a non-finite metric, each in one line naming the file.
"""

import json
import math
from pathlib import Path
from typing import Any

from ...config.reading import read_bounded
from ...errors import ConfigError
from .grid import RunSpec
from .stats import METRICS

__all__ = ["MAX_RECORD_BYTES", "load_record"]

#: Largest ``record.json`` read (bytes); a record is a few kilobytes.
MAX_RECORD_BYTES = 16 << 20
# The keys the report and the resume logic read, with their types (``None`` allowed where listed).
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "seed": (int,),
    "arguments": (list,),
    "command": (str,),
    "metrics": (dict,),
    "git": (dict, type(None)),
    "wall_seconds": (int, float),
    "train_images_per_second": (int, float, type(None)),
}


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _read_json(path: Path) -> Any:
    where = f"sweep record {str(path)!r}"
    raw = read_bounded(path, MAX_RECORD_BYTES, where, "a record")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where} is not UTF-8 text (byte {error.start})") from None
    except (ValueError, RecursionError) as error:
        raise ConfigError(f"{where} is not valid JSON: {_shown(str(error).splitlines()[0])[1:-1]}") from None


def load_record(path: Path, spec: RunSpec) -> dict[str, Any]:
    """The record of ``spec``'s finished run in ``path``, checked key by key.

    Raises:
        ConfigError: Naming ``path``: unreadable, not UTF-8 JSON (``NaN`` included), not an object,
            missing a key or holding one with the wrong type, a non-finite metric, or the record of
            another run than ``spec``.
    """
    record = _read_json(path)
    where = f"sweep record {str(path)!r}"
    if not isinstance(record, dict):
        raise ConfigError(f"{where} must hold a JSON object, got {type(record).__name__}")
    for key, types in _RECORD_TYPES.items():
        value = record.get(key)
        if key not in record or isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ConfigError(f"{where}: {key} must be {expected}, got {_shown(value)}")
    for metric in METRICS:
        value = record["metrics"].get(metric)
        if metric in record["metrics"] and not _finite_number(value):
            raise ConfigError(f"{where}: metrics.{metric} must be a finite number, got {_shown(value)}")
    if (record["name"], record["seed"]) != (spec.name, spec.seed):
        raise ConfigError(
            f"{where} is the record of run {_shown(record['name'])} seed {record['seed']}, not of "
            f"{spec.name!r} seed {spec.seed}"
        )
    return record


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    # repr escapes control characters, so the message stays one line; the cut keeps it short.
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
