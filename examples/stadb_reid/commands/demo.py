"""The offline demo: the full STADB model trained on the built-in synthetic dataset, on CPU."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..config.files import DEFAULT_RECIPE
from ..data import dataset_from_config
from ..engine.preflight import check_dataset_fits, prepare_output_dir
from ..engine.run_folder import CHECKPOINT_NAME, FIGURES_DIR, SYNTHETIC_DIR
from ..engine.trainer import format_metrics, train
from .evaluate import evaluate_untrained
from .visualize import visualize_checkpoint

__all__ = ["format_speed", "run_demo"]


def format_speed(metrics: dict[str, Any], wall_seconds: float) -> str:
    """The demo's closing timing line: wall time, training time and training steps per second.

    Examples:
        >>> history = [{"epoch": 1, "steps": 12}, {"epoch": 2, "steps": 12}]
        >>> format_speed({"train_seconds": 48.0, "history": history}, 125.4)
        'elapsed 2 min 5 s (training 48 s: 24 steps, 0.50 steps/s)'
    """
    steps = sum(int(entry.get("steps", 0)) for entry in metrics.get("history", []))
    seconds = float(metrics["train_seconds"])
    rate = f", {steps / seconds:.2f} steps/s" if seconds > 0 else ""
    minutes, rest = divmod(round(wall_seconds), 60)
    return f"elapsed {minutes} min {rest} s (training {seconds:.0f} s: {steps} steps{rate})"


def run_demo(
    config: Config,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate the synthetic dataset, score an untrained network, train, compare, and draw the figures.

    The synthetic data goes to ``OUTPUT/synthetic`` (generated once, reused after), the checkpoint and
    ``metrics.json`` to ``OUTPUT``, the figures of
    :func:`~stadb_reid.commands.visualize_checkpoint` (training curves, CMC, attention maps and
    ranked retrieval) to ``OUTPUT/figures``. The untrained figures are stored in ``metrics.json`` under
    ``"untrained"``. An ``OUTPUT`` that holds an earlier run is refused unless ``overwrite``, or
    continued from its newest checkpoint with ``resume`` (the untrained network is scored again: it is
    the same network, drawn from the same seed). The last lines give the elapsed time and the
    training steps per second.
    """
    started = time.perf_counter()
    # Before the slow part.
    prepare_output_dir(Path(config.output_dir), resume=resume, overwrite=overwrite)
    config.data.root = str(Path(config.output_dir) / SYNTHETIC_DIR)
    log(f"synthetic dataset in {config.data.root}")
    dataset = dataset_from_config(config.data)
    check_dataset_fits(config, dataset)  # before the untrained network is built
    untrained = evaluate_untrained(config, dataset=dataset, progress=progress)
    log(f"untrained network: {format_metrics(untrained)}")
    metrics = train(
        config,
        dataset=dataset,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        log=log,
        # demo_cpu states every setting a recipe sets: the run is the same under any recipe.
        extra_metrics={"untrained": untrained, "recipe": DEFAULT_RECIPE},
    )
    log(
        f"demo done: rank-1 {untrained['rank1']:.1f}% -> {metrics['rank1']:.1f}%, "
        f"mAP {untrained['mAP']:.1f}% -> {metrics['mAP']:.1f}% (untrained -> trained); "
        f"outputs in {config.output_dir}"
    )
    output_dir = Path(config.output_dir)
    figures = visualize_checkpoint(output_dir / CHECKPOINT_NAME, output_dir / FIGURES_DIR)
    log(f"figures: {', '.join(str(path) for path in figures)}")
    log(format_speed(metrics, time.perf_counter() - started))
    return metrics
