"""Training, evaluation, checkpointing and export of the STADB re-ID network."""

from .checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from .demo import run_demo
from .evaluate import evaluate_checkpoint, evaluate_model, evaluate_untrained
from .export import export_checkpoint
from .extract import extract_folder
from .interrupt import TrainingInterruptedError
from .schedule import learning_rate
from .trainer import build_model, train

__all__ = [
    "TrainingInterruptedError",
    "build_model",
    "evaluate_checkpoint",
    "evaluate_model",
    "evaluate_untrained",
    "export_checkpoint",
    "extract_folder",
    "learning_rate",
    "load_checkpoint",
    "load_latest_checkpoint",
    "run_demo",
    "save_checkpoint",
    "train",
]
