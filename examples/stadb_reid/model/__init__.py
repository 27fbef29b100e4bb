"""The STADB network: backbone, heads, ablation variants and the BDB comparator (stadb_layers.BatchDrop)."""

from .stadb import STADBNet, TrainOutput

__all__ = ["STADBNet", "TrainOutput"]
