"""Using a trained model from other programs: :class:`ReIDExtractor` embeds images held in memory.

It sits beside :mod:`stadb_reid.evaluation`, above the data and the network: it loads a model folder
through :mod:`stadb_reid.model.folder` and applies the preprocessing the folder records to images
handed over in memory.
"""

from .extractor import ImageInput, ReIDExtractor
from .memory import keep_freed_memory
from .precision import Precision

__all__ = ["ImageInput", "Precision", "ReIDExtractor", "keep_freed_memory"]
