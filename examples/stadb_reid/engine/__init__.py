"""Training, evaluation, checkpointing and export of the STADB re-ID network."""

from .checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from .demo import run_demo
from .divergence import TrainingDivergedError
from .evaluate import evaluate_checkpoint, evaluate_model, evaluate_untrained
from .export import export_checkpoint
from .extract import extract_folder
from .interrupt import TrainingInterruptedError
from .preflight import validate_config
from .schedule import learning_rate
from .trainer import build_model, train

__all__ = [
    "TrainingDivergedError",
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
    "validate_config",
]
