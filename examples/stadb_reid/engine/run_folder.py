"""The names of the files in a run's output folder, all in one place.

``stadb-reid train`` writes the checkpoint (and the copy it replaced), ``metrics.json``, the training
curves, TensorBoard event files and the model folder to share; ``stadb-reid demo`` adds the synthetic
dataset and the figures, and a sweep adds the run's log, its sessions, its current launch and, once it
finished, its record. Every module that reads or writes one of these files takes its name from here.
"""

from pathlib import Path

from ..model.folder.names import FOLDER_FILES
from .checkpoint import previous_checkpoint_path

__all__ = [
    "CHECKPOINT_NAME",
    "CURVES_NAME",
    "FIGURES_DIR",
    "LAUNCH_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "MODEL_DIR",
    "PREVIOUS_CHECKPOINT_NAME",
    "RECORD_NAME",
    "RUN_FILES",
    "SESSIONS_NAME",
    "SYNTHETIC_DIR",
    "TENSORBOARD_DIR",
    "owned_files",
]

#: The newest checkpoint (:mod:`stadb_reid.engine.checkpoint`), written after every epoch.
CHECKPOINT_NAME = "checkpoint.pt"
#: The intact checkpoint the newest one replaced (``checkpoint.prev.pt``).
PREVIOUS_CHECKPOINT_NAME = previous_checkpoint_path(Path(CHECKPOINT_NAME)).name
#: The run's result: final metrics, history, config, command.
METRICS_NAME = "metrics.json"
#: The loss, learning rate and evaluated metrics per epoch, drawn.
CURVES_NAME = "curves.png"
#: TensorBoard's event files.
TENSORBOARD_DIR = "tensorboard"
_TENSORBOARD_EVENTS = "events.out.tfevents.*"
#: The model folder to share (:mod:`stadb_reid.model.folder`), written at the end of training.
MODEL_DIR = "model"
#: The demo's synthetic dataset.
SYNTHETIC_DIR = "synthetic"
#: The figures of ``stadb-reid visualize`` (and of the demo), by default.
FIGURES_DIR = "figures"
#: A sweep run's output (every session's, appended), its sessions, its current launch, its record.
LOG_NAME = "train.log"
SESSIONS_NAME = "sessions.json"
LAUNCH_NAME = "launch.json"
RECORD_NAME = "record.json"

#: What a training run writes into its output folder: these mark a folder as holding a run, and are
#: the only files ``--overwrite`` removes.
RUN_FILES = (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, METRICS_NAME, CURVES_NAME, TENSORBOARD_DIR, MODEL_DIR)


def owned_files(folder: str) -> tuple[str, ...]:
    """The glob patterns of the files training writes into ``folder``, one of :data:`RUN_FILES`.

    Examples:
        >>> owned_files(TENSORBOARD_DIR)
        ('events.out.tfevents.*',)
    """
    return FOLDER_FILES if folder == MODEL_DIR else (_TENSORBOARD_EVENTS,)
