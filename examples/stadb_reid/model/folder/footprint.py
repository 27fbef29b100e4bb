"""The memory a network needs, measured on PyTorch's meta device before anything is allocated.

A model folder's ``config.yaml`` sets sizes (``num_classes``, the input height and width) that a
mistaken or hostile file can make absurd: ``num_classes: 100000000`` asks for 573 GiB of classifier
weights, ``height: 1000000`` for a 7.6 GiB feature map per image. :func:`measure_footprint` builds the
network on the meta device (shapes, no storage) and runs one image through it there;
:func:`check_footprint` refuses a network beyond :data:`MAX_WEIGHT_BYTES` of weights or
:data:`MAX_FEATURE_MAP_BYTES` for one image's largest feature map, naming the figure.

Examples:
    >>> from stadb_reid.model import STADBNet
    >>> footprint = measure_footprint(lambda: STADBNet(751, backbone="resnet18"), 384, 128)
    >>> mib = 2**20
    >>> footprint.embedding_dim, footprint.weight_bytes // mib, footprint.feature_map_bytes // mib
    (1536, 51, 3)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["MAX_FEATURE_MAP_BYTES", "MAX_WEIGHT_BYTES", "Footprint", "check_footprint", "measure_footprint"]

#: Most bytes of parameters and buffers a network may have: 16 times the paper's ResNet-50 with a
#: classifier of 100,000 identities (0.7 GiB).
MAX_WEIGHT_BYTES = 16 * 2**30
#: Most bytes of the largest feature map of one image: a 2048 x 2048 input to a ResNet-50 (its stem's
#: 64 x 1024 x 1024 float32 map; a batch multiplies it); a 384 x 128 input needs 3 MiB.
MAX_FEATURE_MAP_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Footprint:
    """Sizes of a network in eval mode, for one ``(1, 3, height, width)`` image."""

    weight_bytes: int
    feature_map_bytes: int
    embedding_dim: int


def _gib(size: int) -> str:
    return f"{size / 2**30:,.2f} GiB"


def measure_footprint(build: Callable[[], nn.Module], height: int, width: int) -> Footprint:
    """Build a network with ``build`` on the meta device and measure it, allocating no storage.

    Args:
        build: Returns the network (called under ``torch.device("meta")``).
        height: Input height.
        width: Input width.

    Returns:
        The bytes of its parameters and buffers, of the largest tensor a module returns for one
        image in eval mode, and the length of the embedding.
    """
    with torch.device("meta"):
        network = build().eval()
    tensors = itertools.chain(network.parameters(), network.buffers())
    weight_bytes = sum(t.numel() * t.element_size() for t in tensors)
    largest = 0

    def record(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, Tensor):
            largest = max(largest, output.numel() * output.element_size())

    handles = [module.register_forward_hook(record) for module in network.modules()]
    try:
        with torch.no_grad():
            embedding = network(torch.empty(1, 3, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return Footprint(weight_bytes, largest, int(embedding.shape[-1]))


def check_footprint(footprint: Footprint, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the figure when ``footprint`` exceeds a bound.

    Examples:
        >>> check_footprint(Footprint(2**40, 2**20, 512), "num_classes 10^9")
        Traceback (most recent call last):
        ...
        ValueError: num_classes 10^9 needs 1,024.00 GiB of weights (at most 16.00 GiB)
    """
    if footprint.weight_bytes > MAX_WEIGHT_BYTES:
        raise ValueError(
            f"{what} needs {_gib(footprint.weight_bytes)} of weights (at most {_gib(MAX_WEIGHT_BYTES)})"
        )
    if footprint.feature_map_bytes > MAX_FEATURE_MAP_BYTES:
        raise ValueError(
            f"{what} needs {_gib(footprint.feature_map_bytes)} for one image's largest feature map "
            f"(at most {_gib(MAX_FEATURE_MAP_BYTES)})"
        )
