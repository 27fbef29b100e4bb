"""The evaluate command: score the model a checkpoint holds, or an untrained one."""

from pathlib import Path
from typing import Any

from ..config import Config, Overrides, load_config
from ..config.files import flatten_config
from ..data import ReIDDataset, dataset_from_config
from ..engine.build import build_model, resolve_device, seed_everything
from ..engine.checkpoint import load_checkpoint
from ..engine.evaluate import evaluate_model
from ..model import STADBNet

__all__ = ["evaluate_checkpoint", "evaluate_untrained", "load_trained_model"]


def load_trained_model(
    checkpoint_path: Path, overrides: Overrides | None = None
) -> tuple[STADBNet, Config, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (on the CPU, in eval mode) and its config.

    No backbone weights are downloaded or read: the checkpoint's state dict replaces them all.

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        overrides: Settings to change, e.g. ``Overrides.from_flags(data_root=...)``. Naming another
            dataset drops the checkpoint's ``data.options``, which belong to its own dataset.

    Returns:
        ``(model, config, checkpoint state)``.

    Raises:
        CheckpointError: The file is missing, damaged or not a stadb-reid checkpoint (names the path).
    """
    state = load_checkpoint(checkpoint_path)
    config = load_config([], flatten_config(state["config"]))
    if overrides is not None:
        config = overrides.applied_to(config)
    config.model.weights = None  # a local weights file used for training need not exist here
    model = build_model(config, state["num_classes"], pretrained=False)
    model.load_state_dict(state["model"])
    return model.eval(), config, state


def evaluate_checkpoint(
    checkpoint_path: Path, overrides: Overrides | None = None, *, progress: bool = True
) -> dict[str, float]:
    """Rebuild the model stored in a checkpoint, load its weights and evaluate it.

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        overrides: Settings to change (see :func:`load_trained_model`).
        progress: Show progress bars.
    """
    model, config, _ = load_trained_model(checkpoint_path, overrides)
    device = resolve_device(config.device)
    dataset = dataset_from_config(config.data)
    return evaluate_model(model.to(device), dataset, config, device, progress=progress)


def evaluate_untrained(
    config: Config, *, dataset: ReIDDataset | None = None, progress: bool = True
) -> dict[str, float]:
    """Evaluate the network ``config`` describes as initialised (seeded by ``config.seed``), untrained.

    This is the baseline a training run has to beat: on a dataset where it already scores well, the
    scores of a trained network say little.
    """
    device = resolve_device(config.device)
    if dataset is None:
        dataset = dataset_from_config(config.data)
    seed_everything(config.seed)
    model = build_model(config, dataset.num_train_pids).to(device)
    return evaluate_model(model, dataset, config, device, progress=progress)
