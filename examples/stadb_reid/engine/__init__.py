"""Training, evaluation and checkpointing of the STADB re-ID network."""

from .checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from .demo import run_demo
from .evaluate import evaluate_checkpoint, evaluate_model, evaluate_untrained
from .interrupt import TrainingInterruptedError
from .schedule import learning_rate
from .trainer import build_model, train

__all__ = [
    "TrainingInterruptedError",
    "build_model",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_untrained",
    "learning_rate",
    "load_checkpoint",
    "load_latest_checkpoint",
    "run_demo",
    "save_checkpoint",
    "train",
]
