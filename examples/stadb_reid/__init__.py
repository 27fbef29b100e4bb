"""STADB person re-identification trainer built from stadb_layers.

The evaluation functions below are imported on first use, so that importing a subpackage (the
``stadb-reid`` command line, for one) does not load the evaluation stack.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .evaluation import (
        RankMetrics,
        evaluate_from_features,
        evaluate_rank,
        extract_features,
        k_reciprocal_rerank_features,
        pairwise_distance,
        rank_metrics,
    )

__all__ = [
    "RankMetrics",
    "evaluate_from_features",
    "evaluate_rank",
    "extract_features",
    "k_reciprocal_rerank_features",
    "pairwise_distance",
    "rank_metrics",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".evaluation", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
