"""Training the STADB re-ID network: the loop and its hooks, checkpoints, evaluation during training.

The commands built on it (evaluate a checkpoint, export, extract, visualize, the demo) are in
:mod:`stadb_reid.commands`.
"""

from .build import build_model, resolve_device, seed_everything
from .checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from .divergence import TrainingDivergedError
from .evaluate import evaluate_model
from .hooks import CheckpointHook, EvalHook, InterruptHook, ProgressHook, TensorBoardHook
from .interrupt import TrainingInterruptedError
from .loop import HookBase, TrainLoop
from .preflight import validate_config
from .schedule import learning_rate
from .state import ResumePosition, TrainState
from .trainer import train

__all__ = [
    "CheckpointHook",
    "EvalHook",
    "HookBase",
    "InterruptHook",
    "ProgressHook",
    "ResumePosition",
    "TensorBoardHook",
    "TrainLoop",
    "TrainState",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "build_model",
    "evaluate_model",
    "learning_rate",
    "load_checkpoint",
    "load_latest_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "train",
    "validate_config",
]
