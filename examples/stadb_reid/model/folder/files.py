"""A model folder written and read as a whole: its three files, from a local path or a Hub repo id.

Loading never unpickles anything: the YAML is read with a safe loader
(:class:`~stadb_reid.model.folder.config.ModelFolderConfig` checks every value), the weights with
``safetensors`` (:mod:`~stadb_reid.model.folder.weights`). Before the network is allocated it is
measured on the meta device (:mod:`~stadb_reid.model.folder.footprint`).

Examples:
    >>> import shutil, tempfile
    >>> from stadb_reid.config import config_to_dict, load_config
    >>> from stadb_reid.model import STADBNet
    >>> from stadb_reid.model.folder.config import model_folder_config
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
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import OmegaConf
from torch import nn

from ...errors import ModelFolderError
from .card import model_card, run_provenance
from .config import EmbeddingNetwork, ModelFolderConfig, network_arguments, trained_model_config
from .footprint import check_footprint, measure_footprint
from .hub import download_from_hub, is_repo_id
from .names import CARD_NAME, CONFIG_NAME, FOLDER_FILES, WEIGHTS_NAME
from .weights import HasStateDict, load_weights, save_weights, state_tensors

__all__ = [
    "load_model_folder",
    "model_fingerprint",
    "read_model_config",
    "resolve_model_folder",
    "save_model_folder",
    "save_trained_model",
]

NetworkT = TypeVar("NetworkT", bound=nn.Module)


def save_model_folder(
    folder: Path | str, network: HasStateDict, config: ModelFolderConfig, *, overwrite: bool = False
) -> Path:
    """Write ``config.yaml``, ``model.safetensors`` and ``README.md`` of ``network`` into ``folder``.

    Args:
        folder: Created if missing; other files in it are left alone.
        network: The trained network.
        config: Its description, from :func:`~stadb_reid.model.folder.config.trained_model_config`
            (or :func:`~stadb_reid.model.folder.config.model_folder_config` for other preprocessing).
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


def save_trained_model(
    folder: Path,
    network: EmbeddingNetwork,
    run_config: Mapping[str, Any],
    num_classes: int,
    *,
    metrics: Mapping[str, Any] | None = None,
    height: int | None = None,
    width: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model folder of a network this package trained, its card naming this command line.

    The preprocessing recorded is the trainer's own (see
    :func:`~stadb_reid.model.folder.config.trained_model_config`).

    Args:
        folder: The folder to write (see :func:`save_model_folder`).
        network: The trained network.
        run_config: The run's config as a plain dict.
        num_classes: Training identities.
        metrics: The run's results, for the card.
        height: Input height; default: the run's ``data.height``.
        width: Input width; default: the run's ``data.width``.
        overwrite: Replace the folder's files if they exist.

    Returns:
        ``folder``.

    Raises:
        ModelFolderError: A file exists and ``overwrite`` is not set, or writing fails.
    """
    provenance = run_provenance(run_config, metrics)
    config = trained_model_config(
        network, run_config, num_classes, height=height, width=width, provenance=provenance
    )
    return save_model_folder(folder, network, config, overwrite=overwrite)


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
    memory (see :mod:`~stadb_reid.model.folder.footprint`), or whose embedding size differs from the
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


def model_fingerprint(network: HasStateDict, config: ModelFolderConfig) -> str:
    """16 hex digits identifying the embeddings: the weights, the network's config and preprocessing.

    The provenance does not count, so a checkpoint and the folder exported from it agree.
    """
    digest = hashlib.sha256()
    defining = {k: v for k, v in config.to_dict().items() if k not in ("provenance", "num_classes")}
    digest.update(json.dumps(defining, sort_keys=True).encode())
    for name, tensor in sorted(state_tensors(network).items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
