"""Export of a checkpoint's eval-mode model to ONNX, TorchScript, safetensors weights or a model folder.

In eval mode :class:`~stadb_reid.model.STADBNet` maps ``(N, 3, H, W)`` normalised images to
``(N, D)`` embeddings (``D = 1536`` for the full model, 512 for the global-only variant): the
``SelfThresholdDrop`` branch is the identity there and the branch selector always runs the attention
module, so the exported graph is the deployed network.

- ONNX goes through the ``torch.export`` based exporter (``dynamo=True``): the TorchScript-based one
  cannot handle the branch selector's ``get_extra_state``. The batch axis is dynamic; the input is
  named ``images`` and the output ``embeddings``.
- TorchScript is traced: ``torch.jit.script`` rejects ``STADBNet`` as a whole (its Python properties
  and the training-mode forward, which appends heads of different types to one list, are not
  TorchScript), while the eval-mode forward has no data-dependent control flow, so a trace records
  it exactly.

- safetensors holds the weights alone (every tensor of the model's ``state_dict``): reading it never
  runs code. Its metadata carries the preprocessing, the number of classes and the training config
  (JSON), which rebuild the network.
- folder is the model folder to share (:mod:`stadb_reid.model.folder`): ``config.yaml``,
  ``model.safetensors`` and a ``README.md`` model card, loaded by
  :meth:`~stadb_reid.model.STADBNet.from_pretrained` and :class:`~stadb_reid.inference.ReIDExtractor`.
  A training run writes the same folder as ``OUTPUT/model``.

Every file carries the preprocessing a consumer has to apply (:func:`preprocessing_metadata`): in the
ONNX ``metadata_props``, as the extra file ``preprocessing.json`` of the TorchScript archive
(read it with ``torch.jit.load(path, _extra_files={"preprocessing.json": ""})``), in the
safetensors header's metadata (``safetensors.safe_open(path, "pt").metadata()``), and in a model
folder's ``config.yaml``. :func:`~stadb_reid.commands.verify.verify_export` checks an export against
the checkpoint's model.
"""

from __future__ import annotations

import json
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from stadb_layers.checks import check_int

from ..config.schema import IMAGENET_MEAN, IMAGENET_STD
from ..engine.run_folder import METRICS_NAME, MODEL_DIR
from ..inference.precision import onnx_program
from ..model.folder.files import save_trained_model
from ..model.folder.weights import save_weights
from .evaluate import load_trained_model

__all__ = [
    "PREPROCESSING_FILE",
    "ExportFormat",
    "export_checkpoint",
    "preprocessing_metadata",
]

#: Name of the preprocessing description inside a TorchScript archive.
PREPROCESSING_FILE = "preprocessing.json"


class ExportFormat(str, Enum):
    """Output format of :func:`export_checkpoint`."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"
    FOLDER = "folder"

    def default_path(self, checkpoint_path: Path) -> Path:
        """The default output beside a checkpoint.

        The folder ``model`` (where a run writes it); for a file, the checkpoint's name with ``.`` and
        the format's name as suffix (not ``.pt``, which would collide with the checkpoint).

        Examples:
            >>> ExportFormat.ONNX.default_path(Path("run/checkpoint.pt")).as_posix()
            'run/checkpoint.onnx'
            >>> ExportFormat.FOLDER.default_path(Path("run/checkpoint.pt")).as_posix()
            'run/model'
        """
        if self is ExportFormat.FOLDER:
            return checkpoint_path.parent / MODEL_DIR
        return checkpoint_path.with_suffix(f".{self.value}")


def preprocessing_metadata(height: int, width: int, embedding_dim: int, variant: str) -> dict[str, str]:
    """The preprocessing an exported model expects, as string key-value pairs (lists in JSON).

    Args:
        height: Input image height.
        width: Input image width.
        embedding_dim: Size of the output embedding.
        variant: The model variant (``"stadb"``, ``"global"``...).

    Returns:
        Resize to ``input_height x input_width`` (bilinear, antialiased), RGB scaled to [0, 1],
        subtract ``mean`` and divide by ``std`` per channel, NCHW float32.

    Examples:
        >>> meta = preprocessing_metadata(384, 128, 1536, "stadb")
        >>> meta["input_height"], meta["input_width"], json.loads(meta["mean"])
        ('384', '128', [0.485, 0.456, 0.406])
    """
    return {
        "input_height": str(height),
        "input_width": str(width),
        "input_layout": "NCHW float32, RGB",
        "resize": "bilinear, antialiased",
        "pixel_scale": "1/255",
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "embedding_dim": str(embedding_dim),
        "variant": variant,
    }


def _run_metrics(checkpoint_path: Path, run_config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``metrics.json`` beside a checkpoint, if the same run wrote it."""
    try:
        metrics = json.loads((checkpoint_path.parent / METRICS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("config") == run_config else None


def export_checkpoint(
    checkpoint_path: Path,
    format: ExportFormat | str = ExportFormat.ONNX,
    out: Path | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
) -> Path:
    """Write a checkpoint's eval-mode model (ONNX, TorchScript), its weights (safetensors) or model folder.

    A model folder's card takes the figures of the run's ``metrics.json`` beside the checkpoint, when
    that file belongs to the same run (same config).

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        format: ``"onnx"``, ``"torchscript"``, ``"safetensors"`` or ``"folder"``.
        out: Output file or folder; default: :meth:`ExportFormat.default_path`. An existing one is
            replaced (the command line refuses that without ``--overwrite``).
        height: Input height; default: the checkpoint config's ``data.height``.
        width: Input width; default: the checkpoint config's ``data.width``.

    Returns:
        The path written.

    Raises:
        ValueError: Unknown ``format``, ``out`` is the checkpoint itself, or a size is below 16.
        CheckpointError: The checkpoint is missing or unreadable (names the path).
    """
    try:
        export_format = ExportFormat(format)
    except ValueError:
        choices = ", ".join(f.value for f in ExportFormat)
        raise ValueError(f"format must be one of {choices}, got {format!r}") from None
    out = Path(out) if out is not None else export_format.default_path(checkpoint_path)
    if out.resolve() == checkpoint_path.resolve():
        raise ValueError(f"out must differ from the checkpoint, got {out}")
    model, config, state = load_trained_model(checkpoint_path)
    height = config.data.height if height is None else height
    width = config.data.width if width is None else width
    check_int(height, "height", 16)
    check_int(width, "width", 16)
    metadata = preprocessing_metadata(height, width, model.embedding_dim, model.variant.value)
    example = torch.zeros(2, 3, height, width)
    out.parent.mkdir(parents=True, exist_ok=True)
    if export_format is ExportFormat.FOLDER:
        metrics = _run_metrics(checkpoint_path, state["config"])
        run_config, num_classes = state["config"], state["num_classes"]
        save_trained_model(
            out, model, run_config, num_classes, metrics=metrics, height=height, width=width, overwrite=True
        )
    elif export_format is ExportFormat.SAFETENSORS:
        header = {**metadata, "num_classes": str(state["num_classes"]), "config": json.dumps(state["config"])}
        save_weights(model, out, header)
    elif export_format is ExportFormat.ONNX:
        program = onnx_program(model, example)
        program.model.metadata_props.update(metadata)
        program.save(str(out))
    else:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream; this format was asked for explicitly.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=FutureWarning)
            # The layers' input checks (rank, channel count) become constants; the weights fix them.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            with torch.no_grad():
                traced = torch.jit.trace(model, example)
            torch.jit.save(traced, str(out), _extra_files={PREPROCESSING_FILE: json.dumps(metadata)})
    return out
