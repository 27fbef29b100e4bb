"""The dataset registry: adapters by name, and building a dataset from a name or a config.

Adapters register themselves when their module is imported (importing
:mod:`stadb_reid.data.datasets` imports all of the built-in ones), in the manner of fast-reid's
registry, either with the decorator form or with a plain call:

.. code-block:: python

    @register_dataset("market1501")
    def load_market1501(root): ...

    register_dataset("mine", load_my_dataset, overwrite=True)

Examples:
    >>> from pathlib import Path
    >>> from stadb_reid.data import ReIDSample
    >>> @register_dataset("doc_toy")
    ... def load_toy(root, *, size=1):
    ...     s = ReIDSample(Path(root) / "a.jpg", 0, 0)
    ...     return ReIDDataset("doc_toy", (s,) * size, (s,), (s,))
    >>> len(build_dataset("DOC_TOY", "anywhere", size=3).train)
    3
    >>> build_dataset("doc_toy", "anywhere", colour="red")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stadb_reid.errors.DatasetOptionError: dataset 'doc_toy' options (data.options): got an unexpected ...
    >>> del _REGISTRY["doc_toy"]
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from stadb_reid.data.datasets.base import ReIDDataset
from stadb_reid.errors import DatasetOptionError, UnknownDatasetError

if TYPE_CHECKING:
    from stadb_reid.config.schema import DataConfig

__all__ = [
    "DatasetFactory",
    "available_datasets",
    "build_dataset",
    "dataset_from_config",
    "register_dataset",
]

#: An adapter: ``factory(root, **options) -> ReIDDataset``.
DatasetFactory = Callable[..., ReIDDataset]
_Factory = TypeVar("_Factory", bound=DatasetFactory)

# Lower-cased name -> adapter. Filled by the adapters' modules as they are imported.
_REGISTRY: dict[str, DatasetFactory] = {}


@overload
def register_dataset(
    name: str, factory: None = None, *, overwrite: bool = False
) -> Callable[[_Factory], _Factory]: ...


@overload
def register_dataset(name: str, factory: DatasetFactory, *, overwrite: bool = False) -> None: ...


def register_dataset(
    name: str, factory: DatasetFactory | None = None, *, overwrite: bool = False
) -> Callable[[_Factory], _Factory] | None:
    """Add an adapter ``factory(root, **options) -> ReIDDataset`` under ``name`` (case-insensitive).

    Called without ``factory``, it returns a decorator that registers the decorated function and
    hands it back unchanged: ``@register_dataset("market1501")``.

    Args:
        name: Registry name, as given to :func:`build_dataset` and ``data.dataset``.
        factory: The adapter; omit it to use the decorator form.
        overwrite: Replace an adapter already registered under ``name``.

    Returns:
        ``None``, or the decorator when ``factory`` is omitted.

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false (raised by the decorator in the
            decorator form).

    Examples:
        >>> register_dataset("viper", lambda root: None)
        Traceback (most recent call last):
        ...
        ValueError: dataset 'viper' is already registered
    """
    if factory is None:

        def decorator(function: _Factory) -> _Factory:
            register_dataset(name, function, overwrite=overwrite)
            return function

        return decorator
    key = name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered")
    _REGISTRY[key] = factory
    return None


def available_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`, sorted.

    Examples:
        >>> available_datasets()
        ['celeb_reid', 'cuhk03', 'dukemtmc', 'folder', 'market1501', 'msmt17', 'synthetic', 'viper']
    """
    return sorted(_REGISTRY)


def build_dataset(name: str, root: str | os.PathLike[str], **options: Any) -> ReIDDataset:
    """Build the dataset registered as ``name`` (case-insensitive) from ``root``.

    Args:
        name: One of :func:`available_datasets`.
        root: Dataset folder (see the adapter for what it may point at).
        **options: Adapter options: ``labeled`` (cuhk03), ``use_val`` (msmt17),
            ``split_seed``/``num_train_ids`` (viper), ``camera_filter`` (celeb_reid), generator
            options (synthetic).

    Returns:
        What the adapter returns.

    Raises:
        UnknownDatasetError: Unknown ``name`` (a ``ValueError``).
        DatasetOptionError: An option the adapter does not take (a ``TypeError``).

    Examples:
        >>> build_dataset("market", "data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stadb_reid.errors.UnknownDatasetError: unknown dataset 'market'; available: celeb_reid, ...
    """
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    _check_options(factory, name, root, options)
    return factory(root, **options)


def dataset_from_config(data: DataConfig) -> ReIDDataset:
    """Build the dataset a config names: ``build_dataset(data.dataset, data.root, **data.options)``.

    Args:
        data: The ``data`` section of a :class:`stadb_reid.config.Config`.

    Returns:
        The dataset.

    Raises:
        UnknownDatasetError: ``data.dataset`` is not registered.
        DatasetOptionError: ``data.options`` holds an option the adapter does not take.

    Examples:
        >>> from stadb_reid.config.schema import DataConfig
        >>> dataset_from_config(DataConfig(dataset="nope"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stadb_reid.errors.UnknownDatasetError: unknown dataset 'nope'; available: celeb_reid, ...
    """
    return build_dataset(data.dataset, data.root, **data.options)


def _check_options(
    function: Callable[..., Any], name: str, root: str | os.PathLike[str], options: dict[str, Any]
) -> None:
    """Raise :class:`DatasetOptionError` unless ``function(root, **options)`` fits its signature."""
    try:
        inspect.signature(function).bind(root, **options)
    except TypeError as error:
        raise DatasetOptionError(f"dataset {name!r} options (data.options): {error}") from None
