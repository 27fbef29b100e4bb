"""What the ``stadb-reid`` commands do, as functions: evaluate, export, extract, visualize, info, the demo.

They sit above the engine: each rebuilds a model from a checkpoint (or trains one, for the demo) and
produces the command's output. The CLI in :mod:`stadb_reid.cli` only parses options and calls them.
"""

from .demo import run_demo
from .evaluate import evaluate_checkpoint, evaluate_untrained, load_trained_model
from .export import ExportFormat, export_checkpoint
from .extract import extract_folder
from .index import index_gallery
from .info import describe_config, num_classes_of, parameter_count
from .search import default_search_outputs, search_gallery
from .visualize import FigurePaths, figure_paths, visualize_checkpoint

__all__ = [
    "ExportFormat",
    "FigurePaths",
    "default_search_outputs",
    "describe_config",
    "evaluate_checkpoint",
    "evaluate_untrained",
    "export_checkpoint",
    "extract_folder",
    "figure_paths",
    "index_gallery",
    "load_trained_model",
    "num_classes_of",
    "parameter_count",
    "run_demo",
    "search_gallery",
    "visualize_checkpoint",
]
