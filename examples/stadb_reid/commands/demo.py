"""The offline demo: the full STADB model trained on the built-in synthetic dataset, on CPU."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..data import dataset_from_config
from ..engine.checkpoint import CHECKPOINT_NAME
from ..engine.preflight import prepare_output_dir
from ..engine.trainer import format_metrics, train
from .evaluate import evaluate_untrained
from .visualize import visualize_checkpoint

__all__ = ["run_demo"]


def run_demo(
    config: Config, *, overwrite: bool = False, progress: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Generate the synthetic dataset, score an untrained network, train, compare, and draw the figures.

    The synthetic data goes to ``OUTPUT/synthetic`` (generated once, reused after), the checkpoint and
    ``metrics.json`` to ``OUTPUT``, the figures of
    :func:`~stadb_reid.visualization.visualize_checkpoint` (training curves, CMC, attention maps and
    ranked retrieval) to ``OUTPUT/figures``. The untrained figures are stored in ``metrics.json`` under
    ``"untrained"``. An ``OUTPUT`` that holds an earlier run is refused unless ``overwrite``.
    """
    prepare_output_dir(Path(config.output_dir), resume=False, overwrite=overwrite)  # before the slow part
    config.data.root = str(Path(config.output_dir) / "synthetic")
    log(f"synthetic dataset in {config.data.root}")
    dataset = dataset_from_config(config.data)
    untrained = evaluate_untrained(config, dataset=dataset, progress=progress)
    log(f"untrained network: {format_metrics(untrained)}")
    metrics = train(
        config,
        dataset=dataset,
        overwrite=overwrite,
        progress=progress,
        log=log,
        extra_metrics={"untrained": untrained},
    )
    log(
        f"demo done: rank-1 {untrained['rank1']:.1f}% -> {metrics['rank1']:.1f}%, "
        f"mAP {untrained['mAP']:.1f}% -> {metrics['mAP']:.1f}% (untrained -> trained); "
        f"outputs in {config.output_dir}"
    )
    output_dir = Path(config.output_dir)
    figures = visualize_checkpoint(output_dir / CHECKPOINT_NAME, output_dir / "figures")
    log(f"figures: {', '.join(str(path) for path in figures)}")
    return metrics
