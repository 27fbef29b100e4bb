"""Batch DropBlock: erase one random block, the same for every sample of the batch.

From Dai, Chen, Gu, Zhu and Tan, "Batch DropBlock Network for Person Re-identification and Beyond",
ICCV 2019 (BDB), the comparator of the STADB paper (Table 6). In each training iteration one block of
``height_ratio * H`` by ``width_ratio * W`` positions is drawn at random and zeroed in every sample and
channel, so the network has to learn from the rest of the feature map; for re-ID the block is a
horizontal stripe (``width_ratio = 1``). :func:`batch_drop` is the functional op, :class:`BatchDrop` the
layer, which is the identity in eval mode.
"""

import torch
from torch import nn

from .checks import check_feature_map, check_in_interval

__all__ = ["BatchDrop", "batch_drop"]


def _check_ratios(height_ratio: float, width_ratio: float) -> tuple[float, float]:
    return (
        check_in_interval(height_ratio, "height_ratio", 0.0, 1.0, low_closed=False, high_closed=True),
        check_in_interval(width_ratio, "width_ratio", 0.0, 1.0, low_closed=False, high_closed=True),
    )


def _block_keep_mask(x: torch.Tensor, height_ratio: float, width_ratio: float) -> torch.Tensor:
    """Boolean (1, 1, H, W) mask, False on one random block; the offsets are drawn on ``x``'s device."""
    height, width = x.shape[2], x.shape[3]
    # int(): under TorchScript round() returns a float (rounding half to even, as Python's does).
    block_h = max(1, int(round(height_ratio * height)))  # noqa: RUF046
    block_w = max(1, int(round(width_ratio * width)))  # noqa: RUF046
    top = torch.randint(0, height - block_h + 1, (1,), device=x.device)
    left = torch.randint(0, width - block_w + 1, (1,), device=x.device)
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top) & (rows < top + block_h)
    in_cols = (cols >= left) & (cols < left + block_w)
    return ~(in_rows[:, None] & in_cols[None, :]).view(1, 1, height, width)


def batch_drop(
    x: torch.Tensor, height_ratio: float = 0.3, width_ratio: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Zero one random block of a feature map, the same block for every sample and channel.

    With :math:`h = \max(1, \operatorname{round}(\text{height\_ratio} \cdot H))` and
    :math:`w = \max(1, \operatorname{round}(\text{width\_ratio} \cdot W))` (``round`` rounds half to even),
    the block's top row :math:`t` and left column :math:`l` are drawn uniformly from
    :math:`\{0, \dots, H - h\}` and :math:`\{0, \dots, W - w\}` with the global random generator of
    ``x``'s device, and

    .. math::

        M_{h', w'} = 1 - [t \le h' < t + h]\,[l \le w' < l + w], \qquad y = x \odot M.

    The mask is a constant for autograd, so :math:`\partial y / \partial x = M`. No data is read to
    build it, so the op never synchronises with the device.

    Args:
        x: Feature map of shape (N, C, H, W), floating point.
        height_ratio: Block height as a fraction of ``H``, in (0, 1] (BDB: 0.3).
        width_ratio: Block width as a fraction of ``W``, in (0, 1] (BDB: 1.0, a horizontal stripe).

    Returns:
        ``(out, keep_mask)``: the masked feature map, same shape and dtype as ``x``, and the boolean keep
        mask of shape (1, 1, H, W), shared by the batch.

    Raises:
        ValueError: If ``x`` is not a 4-D floating tensor with a non-empty spatial size, or a ratio is
            outside (0, 1].

    Examples:
        >>> out, keep = batch_drop(torch.ones(2, 3, 4, 2), height_ratio=0.5)
        >>> keep.shape, int((~keep).sum())
        (torch.Size([1, 1, 4, 2]), 4)
        >>> bool((out[:, :, ~keep[0, 0]] == 0).all())
        True
    """
    check_feature_map(x, "x")
    height_ratio, width_ratio = _check_ratios(height_ratio, width_ratio)
    keep = _block_keep_mask(x, height_ratio, width_ratio)
    return x * keep, keep


class BatchDrop(nn.Module):
    r"""Batch DropBlock (BDB): zero one random block shared by the batch during training.

    In training mode each call draws one block of ``height_ratio * H`` by ``width_ratio * W`` positions
    and zeroes it in every sample and channel (see :func:`batch_drop` for the formula); in eval mode the
    layer is the identity. BDB (Dai et al., ICCV 2019) places it after a ResNet Bottleneck on the
    layer4 map of its second branch, with a horizontal stripe of 0.3 of the height.

    Args:
        height_ratio: Block height as a fraction of the feature map height, in (0, 1] (BDB: 0.3).
        width_ratio: Block width as a fraction of the feature map width, in (0, 1] (BDB: 1.0).

    Shape:
        - Input: (N, C, H, W)
        - Output: (N, C, H, W)

    Examples:
        >>> drop = BatchDrop(height_ratio=0.5, width_ratio=1.0)
        >>> y = drop(torch.ones(2, 3, 4, 2))
        >>> int((y[0, 0] == 0).sum())
        4
        >>> x = torch.rand(2, 3, 4, 2)
        >>> drop.eval()(x) is x
        True
    """

    height_ratio: float
    width_ratio: float

    def __init__(self, height_ratio: float = 0.3, width_ratio: float = 1.0) -> None:
        super().__init__()
        self.height_ratio, self.width_ratio = _check_ratios(height_ratio, width_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Erase the block in training mode; identity in eval mode."""
        check_feature_map(x, "x")
        if not self.training:
            return x
        return batch_drop(x, self.height_ratio, self.width_ratio)[0]

    def extra_repr(self) -> str:
        """Block size ratios."""
        return f"height_ratio={self.height_ratio}, width_ratio={self.width_ratio}"
