"""``model.safetensors`` of a model folder: the weights alone, read without running any code.

Unlike a pickle, a safetensors file holds tensors and nothing else. A file that does not fit the network
its ``config.yaml`` describes is refused, naming the first missing, unexpected, mis-shaped or non-finite
tensor, before any of it reaches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import ModelFolderError
from .names import CONFIG_NAME

__all__ = ["HasStateDict", "load_weights", "save_weights", "state_tensors"]


class HasStateDict(Protocol):
    """A network as its weights file sees it (any ``torch.nn.Module`` is one)."""

    def state_dict(self) -> dict[str, Any]:
        """The network's parameters and buffers by name."""
        ...


def state_tensors(network: HasStateDict) -> dict[str, torch.Tensor]:
    """The tensors of ``network``'s ``state_dict``: what ``model.safetensors`` holds.

    The branch selector's generator state is not a tensor and only matters in training.
    """
    return {k: v for k, v in network.state_dict().items() if isinstance(v, torch.Tensor)}


def save_weights(network: HasStateDict, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write every tensor of ``network``'s ``state_dict`` to a safetensors file (CPU, contiguous)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_tensors(network).items()}
    save_file(tensors, str(path), metadata=dict(metadata or {"format": "pt"}))


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
    expected = state_tensors(network)
    problem = _first_mismatch(expected, tensors) or _first_bad_value(expected, tensors)
    if problem is not None:
        raise ModelFolderError(f"{path} does not fit the network of {CONFIG_NAME}: {problem}")
    network.load_state_dict(tensors, strict=False)
