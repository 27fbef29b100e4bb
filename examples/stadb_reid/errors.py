"""Every error the trainer reports to its user, in one hierarchy.

Each class derives from :class:`ReIDError`, which the ``stadb-reid`` command prints as one line and
exits with the class's :attr:`~ReIDError.exit_code`, and also from the built-in exception a caller
would catch without knowing this module (``ValueError``, ``FileNotFoundError``...).
"""

import os
from pathlib import Path
from typing import ClassVar

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetOptionError",
    "EmptyDatasetError",
    "ExportVerificationError",
    "FileNameError",
    "GalleryIndexError",
    "ModelFolderError",
    "PretrainedWeightsUnavailableError",
    "ReIDDataError",
    "ReIDError",
    "ReIDWarning",
    "StaleDatasetError",
    "TrainingDivergedError",
    "TrainingInterruptedError",
    "UnknownDatasetError",
    "UnreadableImageError",
    "WeightsFileError",
]


class ReIDError(Exception):
    """Base of the trainer's errors: a message for the user, never a traceback."""

    #: Exit status of the ``stadb-reid`` command (2: the input was wrong).
    exit_code: ClassVar[int] = 2
    #: First word of the command's line on stderr.
    label: ClassVar[str] = "error"


class ReIDWarning(UserWarning):
    """Something the user should know that does not stop the run; ``stadb-reid`` prints it in one line."""


class ConfigError(ReIDError, ValueError):
    """A config file, flag or override does not fit the schema, or the run it describes cannot start."""


class ReIDDataError(ReIDError):
    """Base class of the data errors; ``path`` is the file or folder at fault.

    The concrete classes also derive from ``FileNotFoundError``, ``ValueError`` or ``TypeError`` so
    callers can catch them with the built-in types. They take the message as their only required
    argument, which lets ``torch.utils.data.DataLoader`` re-raise them from worker processes.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path: Path | None = None if path is None else Path(path)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(ReIDDataError, FileNotFoundError):
    """A dataset root, split folder or list file does not exist."""


class EmptyDatasetError(ReIDDataError, ValueError):
    """A dataset root or split folder exists but holds no usable images."""


class DatasetFormatError(ReIDDataError, ValueError):
    """A file does not follow the dataset's format (list file line, folder name, metadata)."""


class FileNameError(DatasetFormatError):
    """An image file name cannot be parsed into an identity and a camera."""


class StaleDatasetError(DatasetFormatError):
    """A synthetic dataset folder cannot be reused or regenerated as asked."""


class UnreadableImageError(ReIDDataError, ValueError):
    """An image file cannot be opened or decoded (raised when it is loaded, not at construction)."""


class GalleryIndexError(ReIDDataError, ValueError):
    """A gallery index folder is missing, damaged or unfinished, or belongs to another model."""


class UnknownDatasetError(ReIDDataError, ValueError):
    """No adapter is registered under the requested name."""


class DatasetOptionError(ReIDDataError, TypeError):
    """An adapter was given an option it does not take."""


class CheckpointError(ReIDError, ValueError):
    """A checkpoint file is missing, damaged, unsafe to read, incomplete or cannot be written."""


class ModelFolderError(ReIDError, ValueError):
    """A model folder is missing, incomplete, damaged, not downloadable, or its weights misfit its config."""


class ExportVerificationError(ReIDError, RuntimeError):
    """An exported model's embeddings differ from those of the PyTorch model it was exported from."""

    exit_code = 1


class PretrainedWeightsUnavailableError(ReIDError, RuntimeError):
    """The ImageNet weights cannot be downloaded and no local file was given."""


class WeightsFileError(ReIDError, ValueError):
    """A local weights file is damaged, of another model, or a pickle that would need to run code."""


class TrainingDivergedError(ReIDError, RuntimeError):
    """The loss or the gradients became NaN or infinite; the step that saw it was not applied."""

    exit_code = 1


class TrainingInterruptedError(ReIDError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint that ``--resume`` continues from."""

    exit_code = 130
    label = "interrupted"
