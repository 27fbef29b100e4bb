"""Training the STADB re-ID network: the loop and its hooks, checkpoints, evaluation during training.

The commands built on it (evaluate a checkpoint, export, extract, visualize, the demo) are in
:mod:`stadb_reid.commands`.
"""

from .build import build_model
from .checkpoint import load_checkpoint
from .loop import HookBase, TrainLoop
from .state import TrainState
from .trainer import Trainer, train

__all__ = ["HookBase", "TrainLoop", "TrainState", "Trainer", "build_model", "load_checkpoint", "train"]
