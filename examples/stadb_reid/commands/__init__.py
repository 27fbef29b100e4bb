"""What the ``stadb-reid`` commands do, as functions: evaluate, export, extract, visualize and the demo.

They sit above the engine: each rebuilds a model from a checkpoint (or trains one, for the demo) and
produces the command's output. The CLI in :mod:`stadb_reid.cli` only parses options and calls them.
"""

from .demo import run_demo
from .evaluate import evaluate_checkpoint, evaluate_untrained, load_trained_model
from .export import ExportFormat, export_checkpoint
from .extract import extract_folder
from .visualize import FigurePaths, figure_paths, visualize_checkpoint

__all__ = [
    "ExportFormat",
    "FigurePaths",
    "evaluate_checkpoint",
    "evaluate_untrained",
    "export_checkpoint",
    "extract_folder",
    "figure_paths",
    "load_trained_model",
    "run_demo",
    "visualize_checkpoint",
]
