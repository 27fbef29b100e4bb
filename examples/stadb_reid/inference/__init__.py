"""Using a trained model from other programs: its model folder, and :class:`ReIDExtractor` to embed images.

It sits beside :mod:`stadb_reid.evaluation`, above the data and the network: it writes and reads model
folders (:mod:`stadb_reid.model.folder`) with the trainer's preprocessing, and applies that
preprocessing to images handed over in memory.
"""

from .extractor import ImageInput, Preprocess, ReIDExtractor
from .precision import PRECISIONS, Precision, cpu_has_native_bf16
from .trained import save_trained_model, trained_model_config

__all__ = [
    "PRECISIONS",
    "ImageInput",
    "Precision",
    "Preprocess",
    "ReIDExtractor",
    "cpu_has_native_bf16",
    "save_trained_model",
    "trained_model_config",
]
