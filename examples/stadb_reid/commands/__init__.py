"""What the ``stadb-reid`` commands do, as functions: evaluate, export, extract, visualize, info, the demo.

They sit above the engine: each rebuilds a model from a checkpoint (or trains one, for the demo) and
produces the command's output. The CLI in :mod:`stadb_reid.cli` only parses options and calls them.
"""

from .demo import run_demo
from .evaluate import evaluate_checkpoint
from .export import ExportFormat, export_checkpoint
from .extract import extract_folder
from .index import index_gallery
from .info import describe_config
from .search import search_gallery
from .visualize import visualize_checkpoint

__all__ = [
    "ExportFormat",
    "describe_config",
    "evaluate_checkpoint",
    "export_checkpoint",
    "extract_folder",
    "index_gallery",
    "run_demo",
    "search_gallery",
    "visualize_checkpoint",
]
