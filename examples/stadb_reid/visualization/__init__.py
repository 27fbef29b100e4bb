"""Figures of the STADB re-ID trainer: training curves, CMC, attention maps (Figure 3), retrieval (Figure 4).

Everything is drawn with matplotlib's object-oriented API on an Agg canvas: no window is opened, no
global pyplot state is kept, and a figure is freed as soon as it is no longer referenced.

Typical use::

    plot_cmc(metrics, "cmc.png")

figure by figure (:func:`stadb_reid.commands.visualize_checkpoint` draws them all for a checkpoint)::

    plot_training_curves(checkpoint["history"], "curves.png")
    plot_cmc(rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids), "cmc.png")
    plot_attention(images, compute_attention_maps(model, images), "attention.png")
    matches = top_matches(distmat[chosen], q_pids[chosen], g_pids, q_camids[chosen], g_camids)
    plot_retrieval(query_images, matches, gallery_images, "retrieval.png")

Each ``plot_*`` function has a ``*_figure`` twin that returns the :class:`matplotlib.figure.Figure`
instead of writing it.
"""

from .attention import plot_attention
from .attention_maps import compute_attention_maps
from .cmc import plot_cmc
from .curves import plot_training_curves
from .retrieval import plot_retrieval, top_matches

__all__ = [
    "compute_attention_maps",
    "plot_attention",
    "plot_cmc",
    "plot_retrieval",
    "plot_training_curves",
    "top_matches",
]
