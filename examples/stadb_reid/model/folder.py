"""A trained model as a folder to share: ``config.yaml``, ``model.safetensors`` and a ``README.md`` card.

- ``config.yaml`` holds what rebuilds the eval-mode network and feeds it
  (:class:`~stadb_reid.model.folder_config.ModelFolderConfig`).
- ``model.safetensors`` holds the weights alone: reading it never runs code, unlike a pickle.
- ``README.md`` is the model card (:func:`~stadb_reid.model.card.model_card`).

Loading never unpickles anything: the YAML is read with a safe loader, the weights with
``safetensors``. A folder whose weights do not fit the network its config describes is refused, naming
the first missing, unexpected or mis-shaped tensor. A folder can also come from the Hugging Face Hub
(:func:`resolve_model_folder`).

Examples:
    >>> import shutil, tempfile
    >>> from stadb_reid.config import config_to_dict, load_config
    >>> from stadb_reid.model import STADBNet
    >>> from stadb_reid.model.folder_config import model_folder_config
    >>> run = load_config([], {"model.backbone": "resnet18", "data.height": 64, "data.width": 32})
    >>> network = STADBNet(5, backbone="resnet18").eval()
    >>> config = model_folder_config(
    ...     network, config_to_dict(run), num_classes=5, mean=(0.5,) * 3, std=(0.25,) * 3
    ... )
    >>> folder = save_model_folder(Path(tempfile.mkdtemp()) / "model", network, config)
    >>> sorted(path.name for path in folder.iterdir())
    ['README.md', 'config.yaml', 'model.safetensors']
    >>> loaded, read = load_model_folder(STADBNet, folder)
    >>> x = torch.randn(1, 3, 64, 32)
    >>> read == config, bool(torch.equal(loaded(x), network(x)))
    (True, True)
    >>> shutil.rmtree(folder.parent)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ModelFolderError
from .card import model_card
from .folder_config import ModelFolderConfig, network_arguments
from .footprint import check_footprint, measure_footprint
from .hub import download_from_hub, is_repo_id

if TYPE_CHECKING:
    import os

    from .stadb import STADBNet

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FOLDER_FILES",
    "WEIGHTS_NAME",
    "load_model_folder",
    "load_weights",
    "model_fingerprint",
    "read_model_config",
    "resolve_model_folder",
    "save_model_folder",
    "save_weights",
]

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FOLDER_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
NetworkT = TypeVar("NetworkT", bound="STADBNet")


def _tensors(network: nn.Module) -> dict[str, torch.Tensor]:
    # The branch selector's generator state is not a tensor and only matters in training.
    return {k: v for k, v in network.state_dict().items() if isinstance(v, torch.Tensor)}


def save_weights(network: nn.Module, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write every tensor of ``network``'s ``state_dict`` to a safetensors file (CPU, contiguous)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in _tensors(network).items()}
    save_file(tensors, str(path), metadata=dict(metadata or {"format": "pt"}))


def save_model_folder(
    folder: Path | str, network: STADBNet, config: ModelFolderConfig, *, overwrite: bool = False
) -> Path:
    """Write ``config.yaml``, ``model.safetensors`` and ``README.md`` of ``network`` into ``folder``.

    Args:
        folder: Created if missing; other files in it are left alone.
        network: The trained network.
        config: Its description, from :func:`~stadb_reid.model.folder_config.model_folder_config`.
        overwrite: Replace the three files if they exist; without it an existing one is refused.

    Returns:
        ``folder``.

    Raises:
        ModelFolderError: A file of the folder exists and ``overwrite`` is not set, or writing fails.
    """
    folder = Path(folder)
    existing = [folder / name for name in FOLDER_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise ModelFolderError(f"{existing[0]} exists; pass --overwrite to replace it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_weights(network, folder / WEIGHTS_NAME)
        (folder / CONFIG_NAME).write_text(OmegaConf.to_yaml(OmegaConf.create(config.to_dict())))
        (folder / CARD_NAME).write_text(model_card(config))
    except OSError as error:
        raise ModelFolderError(f"cannot write model folder {folder}: {error.strerror or error}") from error
    return folder


def resolve_model_folder(path_or_repo_id: str | os.PathLike[str]) -> Path:
    """A local model folder, or the download of a Hugging Face Hub repo when a ``str`` names none.

    A string of the form ``owner/name`` that is not an existing path is a Hub repo id: its three files
    are downloaded with ``huggingface_hub.snapshot_download`` (cached; offline, the cache serves).

    Raises:
        ModelFolderError: No such folder and no Hub repo to fall back to (names the path or repo id).
    """
    path = Path(path_or_repo_id)
    if path.is_dir():
        return path
    if path.exists():
        raise ModelFolderError(f"{path} is a file, not a model folder ({', '.join(FOLDER_FILES)})")
    if not (isinstance(path_or_repo_id, str) and is_repo_id(path_or_repo_id)):
        raise ModelFolderError(f"model folder not found: {path}")
    return download_from_hub(path_or_repo_id, FOLDER_FILES)


def read_model_config(folder: Path) -> ModelFolderConfig:
    """Read and check a model folder's ``config.yaml`` (the weights file must exist too).

    Raises:
        ModelFolderError: A file is missing, the YAML does not parse, has another ``format`` or lacks
            an entry (names the file and the key).
    """
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise ModelFolderError(f"model folder {folder} lacks {name}")
    path = folder / CONFIG_NAME
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as error:  # PyYAML's and OmegaConf's parse errors share no base class
        raise ModelFolderError(f"cannot read {path}: {str(error).splitlines()[0]}") from error
    return ModelFolderConfig.from_dict(data, path)


def _first_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    for name, tensor in expected.items():
        if name not in found:
            return f"missing tensor {name!r}"
        if found[name].shape != tensor.shape:
            return (
                f"tensor {name!r} has shape {tuple(found[name].shape)} in the file, "
                f"{tuple(tensor.shape)} in the network"
            )
    unexpected = [name for name in found if name not in expected]
    return f"unexpected tensor {unexpected[0]!r}" if unexpected else None


def _first_bad_value(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    """The first tensor of another kind of dtype (loading would cast it), or holding NaN or infinity."""
    for name, tensor in expected.items():
        value = found[name]
        if value.is_floating_point() != tensor.is_floating_point() or value.is_complex():
            return f"tensor {name!r} has dtype {value.dtype} in the file, {tensor.dtype} in the network"
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return f"tensor {name!r} holds NaN or infinite values"
    return None


def load_weights(network: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``network``, refusing a file that does not fit it exactly.

    Raises:
        ModelFolderError: The file is missing or not safetensors (a pickle, say), or names the first
            tensor the network lacks, the first it has that the file lacks, the first of another shape,
            the first of another kind of dtype (integer or bool weights, a float step counter), or the
            first holding NaN or infinity.
    """
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ModelFolderError(f"{path} is not a readable safetensors file: {error}") from error
    expected = _tensors(network)
    problem = _first_mismatch(expected, tensors) or _first_bad_value(expected, tensors)
    if problem is not None:
        raise ModelFolderError(f"{path} does not fit the network of {CONFIG_NAME}: {problem}")
    network.load_state_dict(tensors, strict=False)


def _check_network_size(build: Callable[[], nn.Module], config: ModelFolderConfig, path: Path) -> None:
    """Refuse, before allocating, a network too large for memory or of another embedding size."""
    what = f"the network of num_classes {config.num_classes} at {config.height} x {config.width}"
    try:
        footprint = measure_footprint(build, config.height, config.width)
    except (ValueError, TypeError, RuntimeError) as error:  # sizes beyond int64 overflow even there
        raise ModelFolderError(
            f"{path}: {what} is too large to build ({str(error).splitlines()[0]})"
        ) from None
    try:
        check_footprint(footprint, what)
    except ValueError as error:
        raise ModelFolderError(f"{path}: {error}") from None
    if footprint.embedding_dim != config.embedding_dim:
        raise ModelFolderError(
            f"{path}: embedding_dim is {config.embedding_dim}, "
            f"but its network gives {footprint.embedding_dim}"
        )


def load_model_folder(
    network_class: Callable[..., NetworkT],
    path_or_repo_id: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
) -> tuple[NetworkT, ModelFolderConfig]:
    """Rebuild the network of a model folder (or Hub repo), load its weights, and return it in eval mode.

    Args:
        network_class: :class:`~stadb_reid.model.STADBNet` (or a subclass).
        path_or_repo_id: A model folder, or a Hub repo id (see :func:`resolve_model_folder`).
        device: Where to put the network; default: the CPU.

    Returns:
        ``(network, config)``.

    Before anything is allocated, the network is measured on the meta device: one too large for
    memory (see :mod:`~stadb_reid.model.footprint`), or whose embedding size differs from the
    config's, is refused.

    Raises:
        ModelFolderError: See :func:`resolve_model_folder`, :func:`read_model_config` and
            :func:`load_weights`; also names a network too large or of another embedding size.
    """
    folder = resolve_model_folder(path_or_repo_id)
    config = read_model_config(folder)
    arguments = network_arguments(config.model_config(folder / CONFIG_NAME))
    _check_network_size(lambda: network_class(config.num_classes, **arguments), config, folder / CONFIG_NAME)
    network = network_class(config.num_classes, **arguments)
    load_weights(network, folder / WEIGHTS_NAME)
    network.eval()
    return (network if device is None else network.to(device)), config


def model_fingerprint(network: nn.Module, config: ModelFolderConfig) -> str:
    """16 hex digits identifying the embeddings: the weights, the network's config and preprocessing.

    The provenance does not count, so a checkpoint and the folder exported from it agree.
    """
    digest = hashlib.sha256()
    defining = {k: v for k, v in config.to_dict().items() if k not in ("provenance", "num_classes")}
    digest.update(json.dumps(defining, sort_keys=True).encode())
    for name, tensor in sorted(_tensors(network).items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
