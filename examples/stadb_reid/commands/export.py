"""Export of a checkpoint's eval-mode embedding model to ONNX or TorchScript, or its weights to safetensors.

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

- safetensors holds the weights alone (every tensor of the model's ``state_dict``), the file to hand
  to other people: reading it never runs code. Its metadata carries the preprocessing, the number of
  classes and the training config (JSON), which rebuild the network.

Every file carries the preprocessing a consumer has to apply (:func:`preprocessing_metadata`): in the
ONNX ``metadata_props``, as the extra file ``preprocessing.json`` of the TorchScript archive
(read it with ``torch.jit.load(path, _extra_files={"preprocessing.json": ""})``), and in the
safetensors header's metadata (``safetensors.safe_open(path, "pt").metadata()``).
"""

from __future__ import annotations

import json
import warnings
from enum import Enum
from pathlib import Path

import torch
from safetensors.torch import save_file

from stadb_layers._validation import check_int

from ..data import IMAGENET_MEAN, IMAGENET_STD
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
    """Output format of :func:`export_checkpoint`; ``suffix`` is the default file suffix."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"

    @property
    def suffix(self) -> str:
        """``.`` and the format's name (not ``.pt``, which would collide with ``checkpoint.pt``)."""
        return f".{self.value}"


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


def export_checkpoint(
    checkpoint_path: Path,
    format: ExportFormat | str = ExportFormat.ONNX,
    out: Path | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
) -> Path:
    """Write a checkpoint's eval-mode embedding model (ONNX, TorchScript) or its weights (safetensors).

    Args:
        checkpoint_path: A ``checkpoint.pt`` written by :func:`~stadb_reid.engine.train`.
        format: ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        out: Output file; default: the checkpoint's path with the format's suffix.
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
    out = Path(out) if out is not None else checkpoint_path.with_suffix(export_format.suffix)
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
    if export_format is ExportFormat.SAFETENSORS:
        # The branch selector's generator state (not a tensor) only matters in training.
        tensors = {k: v.contiguous() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
        header = {**metadata, "num_classes": str(state["num_classes"]), "config": json.dumps(state["config"])}
        save_file(tensors, str(out), metadata=header)
    elif export_format is ExportFormat.ONNX:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        assert program is not None  # returned when no file name is given
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
