"""Deprecated names kept importable from the module they used to live in."""

import warnings
from collections.abc import Callable
from importlib import import_module
from typing import Any

__all__ = ["moved_names"]


def moved_names(module: str, new_homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that loads each name of ``new_homes`` from its new module, with a warning.

    Args:
        module: The old module's name, for messages.
        new_homes: Each moved name and the module that now defines it, as ``"module"``, or as
            ``"module:new_name"`` when it was also renamed.

    Examples:
        >>> __getattr__ = moved_names("pkg.old", {"dumps": "json"})
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     __getattr__("dumps")([1])
        '[1]'
        >>> str(caught[0].message)
        'pkg.old.dumps moved to json.dumps; import it from there'
        >>> moved_names("pkg.old", {"to_json": "json:dumps"})("to_json")([2])
        '[2]'
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module attribute hook's required name
        if name not in new_homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, _, new_name = new_homes[name].partition(":")
        warnings.warn(
            f"{module}.{name} moved to {home}.{new_name or name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(import_module(home), new_name or name)

    return __getattr__
