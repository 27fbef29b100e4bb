"""Training, evaluation and checkpointing of the STADB re-ID network."""

from .checkpoint import load_checkpoint, save_checkpoint
from .demo import run_demo
from .evaluate import evaluate_checkpoint, evaluate_model
from .schedule import learning_rate
from .trainer import build_model, train

__all__ = [
    "build_model",
    "evaluate_checkpoint",
    "evaluate_model",
    "learning_rate",
    "load_checkpoint",
    "run_demo",
    "save_checkpoint",
    "train",
]
