"""Batch DropBlock, the comparator of the STADB paper.

From Dai et al., "Batch DropBlock Network for Person Re-identification and Beyond", ICCV 2019 (BDB):
in each training iteration one random horizontal stripe is erased, the same for every image of the
batch.
"""

import torch
from torch import nn

from stadb_layers.checks import check_in_interval

__all__ = ["BatchDrop"]


class BatchDrop(nn.Module):
    """Zero one random block of ``height_ratio * H`` by ``width_ratio * W``, shared by the whole batch.

    Args:
        height_ratio: Block height as a fraction of the feature map height (BDB: 0.3).
        width_ratio: Block width as a fraction of the feature map width (BDB: 1.0).

    Raises:
        ValueError: If a ratio is outside (0, 1].

    Examples:
        >>> drop = BatchDrop(height_ratio=0.5, width_ratio=1.0)
        >>> y = drop(torch.ones(2, 3, 4, 2))
        >>> int((y[0, 0] == 0).sum())
        4
    """

    def __init__(self, height_ratio: float = 0.3, width_ratio: float = 1.0) -> None:
        super().__init__()
        self.height_ratio = check_in_interval(
            height_ratio, "height_ratio", 0, 1, low_closed=False, high_closed=True
        )
        self.width_ratio = check_in_interval(
            width_ratio, "width_ratio", 0, 1, low_closed=False, high_closed=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Erase the block in training mode; identity in eval mode."""
        if not self.training:
            return x
        height, width = x.shape[-2:]
        block_h = max(1, round(self.height_ratio * height))
        block_w = max(1, round(self.width_ratio * width))
        top = int(torch.randint(0, height - block_h + 1, ()))
        left = int(torch.randint(0, width - block_w + 1, ()))
        mask = x.new_ones(1, 1, height, width)
        mask[..., top : top + block_h, left : left + block_w] = 0
        return x * mask

    def extra_repr(self) -> str:
        """Block size ratios."""
        return f"height_ratio={self.height_ratio}, width_ratio={self.width_ratio}"
