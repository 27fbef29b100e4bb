"""Factory for the attention modules (CBAM, SE, SRM, triplet attention) by name.

The modules follow Woo et al. (CBAM, ECCV 2018), Hu et al. (SE, CVPR 2018), Lee et al. (SRM, ICCV 2019) and
Misra et al. (triplet attention, WACV 2021), as used in "STADB: A Self-Thresholding Attention Guided ADB
Network for Person Re-identification".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from stadb_layers.cbam import CBAM
from stadb_layers.se import SE
from stadb_layers.srm import SRM
from stadb_layers.triplet_attention import TripletAttention

__all__ = ["create_attention"]

_ATTENTION_LAYERS: dict[str, type[nn.Module]] = {
    "cbam": CBAM,
    "se": SE,
    "srm": SRM,
    "triplet": TripletAttention,
}
# Named configurations of the modules above, called as preset(channels, **overrides). Kept apart from
# _ATTENTION_LAYERS, the module names that the trainer's `model.attention` choice mirrors.
_ATTENTION_PRESETS: dict[str, Callable[..., nn.Module]] = {"cbam_reference": CBAM.stadb_reference}
_FACTORIES: dict[str, Callable[..., nn.Module]] = {**_ATTENTION_LAYERS, **_ATTENTION_PRESETS}


def create_attention(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build an attention module by name.

    Args:
        name: One of ``"cbam"``, ``"cbam_reference"`` (the STADB authors' CBAM,
            :meth:`~stadb_layers.cbam.CBAM.stadb_reference`), ``"se"``, ``"srm"``, ``"triplet"``
            (case-insensitive).
        channels: Number of input channels, passed first positionally. Every module checks its input
            against it (triplet attention has no channel-dependent parameters, only the check).
        **kwargs: Further keyword arguments of the module, e.g. ``reduction``, ``kernel_size``, ``device``;
            for ``"cbam_reference"`` they override the preset's values.

    Returns:
        The module: :class:`~stadb_layers.cbam.CBAM`, :class:`~stadb_layers.se.SE`,
        :class:`~stadb_layers.srm.SRM` or :class:`~stadb_layers.triplet_attention.TripletAttention`.

    Raises:
        ValueError: If ``name`` is not one of the names above, or if the module rejects an argument.

    Examples:
        >>> attn = create_attention("SE", 64, reduction=8)
        >>> type(attn).__name__, attn.hidden_channels
        ('SE', 8)
        >>> create_attention("cbam_reference", 64).extra_repr()
        "channels=64, reduction=4, kernel_size=3, spatial_bias=True, spatial_norm=False, pool_order='avg_max'"
    """
    key = name.lower() if isinstance(name, str) else None
    if key is None or key not in _FACTORIES:
        raise ValueError(f"name must be one of {sorted(_FACTORIES)}, got {name!r}")
    return _FACTORIES[key](channels, **kwargs)
