"""ResNet-50 backbone with the last stride set to 1, from timm.

With a 384x128 input, the layer4 feature map is 2048 x 24 x 8 instead of 2048 x 12 x 4, which keeps
the spatial detail the drop and attention branches work on (Sun et al. 2018, "Beyond Part Models").

A name may carry one of timm's weight tags, e.g. ``resnet50.tv_in1k`` (torchvision's ImageNet weights,
where the STADB authors start) instead of timm's default ``resnet50.a1_in1k``. The tag only picks the
weights ``pretrained`` downloads; the architecture is the same for every tag.
"""

import pickle
import socket
import urllib.parse
from pathlib import Path
from typing import cast

import timm
import timm.models
from timm.models.resnet import ResNet
from torch import nn

from ..errors import PretrainedWeightsUnavailableError, WeightsFileError

__all__ = [
    "PretrainedWeightsUnavailableError",
    "WeightsFileError",
    "build_backbone",
    "check_backbone_name",
    "check_pretrained_reachable",
]

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (or the mirror set in ``HF_ENDPOINT``) accepts a connection."""
    from huggingface_hub import constants

    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_pretrained_reachable(name: str) -> None:
    """Check, within seconds, that the ImageNet weights of ``name`` can be downloaded.

    Raises:
        PretrainedWeightsUnavailableError: The model hub cannot be reached (offline, or blocked).
    """
    if not _hub_reachable():
        raise PretrainedWeightsUnavailableError(
            f"cannot download the ImageNet weights of {name}: the model hub is unreachable (offline?). "
            "Train from scratch with --no-pretrained, or load a local file with --weights FILE "
            "(.pth or .safetensors)."
        )


def check_backbone_name(name: str, key: str = "backbone") -> None:
    """Check offline that ``name`` is a timm ResNet, with a weight tag timm knows if it has one.

    Args:
        name: E.g. ``"resnet50"`` or ``"resnet50.tv_in1k"``.
        key: What to call the value in the error message.

    Raises:
        ValueError: In one line naming ``key``, for another architecture or an unknown tag.

    Examples:
        >>> check_backbone_name("resnet50.tv_in1k")
        >>> check_backbone_name("resnet50.tv9_in1k")
        Traceback (most recent call last):
        ...
        ValueError: backbone 'resnet50.tv9_in1k': timm has no weights tagged tv9_in1k for resnet50 ...
    """
    architecture, tag = timm.models.split_model_name_tag(name)
    if not timm.models.is_model(architecture) or not timm.models.model_entrypoint(
        architecture
    ).__module__.endswith(".resnet"):
        raise ValueError(f"{key} must be a timm ResNet such as resnet50, got {name!r}")
    if not tag:
        return
    tags = [known.partition(".")[2] for known in timm.models.get_arch_pretrained_cfgs(architecture)]
    if tag not in tags:
        raise ValueError(
            f"{key} {name!r}: timm has no weights tagged {tag} for {architecture} "
            f"(known tags: {', '.join(tags) or 'none'})"
        )


def build_backbone(
    name: str = "resnet50", *, pretrained: bool = False, weights: Path | None = None, last_stride: int = 1
) -> ResNet:
    """Build a timm ResNet without its head, returning (N, C, H/16, W/16) features for ``last_stride=1``.

    Args:
        name: A timm ResNet name, e.g. ``"resnet50"``, optionally with a weight tag
            (``"resnet50.tv_in1k"``, see :func:`check_backbone_name`).
        pretrained: Download the ImageNet weights through timm. Offline, this fails within seconds with
            :class:`PretrainedWeightsUnavailableError` instead of retrying for a minute.
        weights: A local ``.pth``/``.pt``/``.bin``/``.safetensors`` file of the timm model's weights,
            loaded instead of downloading. The classifier weights in it are ignored.
        last_stride: Stride of layer4 (1 in the paper, 2 in the standard ResNet).

    Raises:
        PretrainedWeightsUnavailableError: If ``pretrained`` is set and the hub cannot be reached.
        FileNotFoundError: If ``weights`` does not exist.
        WeightsFileError: If ``weights`` holds anything but plain tensors of this model.
        ValueError: If ``name`` is not a timm ResNet with a known tag, ``weights`` has an unknown
            suffix or ``last_stride`` is not 1 or 2.
    """
    check_backbone_name(name)
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    overlay = None
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        if weights.suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_SUFFIXES)} files, got {weights}")
        overlay = dict(file=str(weights))
    elif pretrained:
        check_pretrained_reachable(name)
    try:
        # timm reads .pth files with torch.load(weights_only=True): a pickle that would run code is refused.
        model = timm.create_model(
            name,
            pretrained=pretrained or weights is not None,
            pretrained_cfg_overlay=overlay,
            num_classes=0,
            global_pool="",
        )
    except (pickle.UnpicklingError, RuntimeError, OSError) as error:
        if weights is None:
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsFileError(f"cannot load weights file {weights}: {reason}") from None
    assert isinstance(model, ResNet), "check_backbone_name admits timm ResNets only"
    if last_stride == 1:
        # The strided 3x3 conv (conv2 in a Bottleneck, conv1 in a BasicBlock) and the shortcut's 1x1 conv.
        layer4 = cast(nn.Sequential, model.layer4)
        for module in layer4[0].modules():
            if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                module.stride = (1, 1)
    return model
