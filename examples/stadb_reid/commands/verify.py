"""Checking an export against the checkpoint's PyTorch model: the same embeddings, the same ranking.

:func:`verify_export` runs the exported model (ONNX Runtime for ONNX, ``torch.jit`` for TorchScript,
:meth:`~stadb_reid.model.STADBNet.from_pretrained` for a model folder, the rebuilt network for
safetensors weights) and the PyTorch model on seeded random inputs at the export's size, at batch 1 and
batch 8, and reports the largest absolute difference between their embeddings. With a dataset it also
embeds a small query/gallery subset both ways and reports rank-1 and mAP of each.

The check fails when the difference exceeds :data:`RELATIVE_TOLERANCE` times the largest absolute
entry of the PyTorch embeddings. ONNX Runtime's float32 kernels sum in another order than PyTorch's:
on the tests' model they differ by 2.5e-7 of that scale, while a wrong export (other weights in one
layer, training-mode batch norm, a missing module) differs by more than 1e-1.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor
from torch.utils.data import DataLoader

from ..config import Overrides
from ..data import ReIDSample, build_test_transform, dataset_from_config
from ..data.loaders import ImageDataset
from ..errors import ConfigError, ExportVerificationError
from ..evaluation import evaluate_from_features
from ..model import STADBNet
from ..model.folder.files import load_model_folder
from ..model.folder.weights import load_weights
from .evaluate import load_trained_model
from .export import PREPROCESSING_FILE, ExportFormat

__all__ = ["RELATIVE_TOLERANCE", "VerificationReport", "verify_export"]

#: Largest accepted ``|exported - PyTorch|``, as a fraction of the largest ``|PyTorch|`` entry.
RELATIVE_TOLERANCE = 1e-4
BATCH_SIZES = (1, 8)
#: Queries and gallery images of the ranking check.
SUBSET_SIZES = (50, 200)

Runner = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class VerificationReport:
    """What :func:`verify_export` measured.

    Attributes:
        max_difference: Largest ``|exported - PyTorch|`` over every embedding compared.
        tolerance: The largest accepted (see :data:`RELATIVE_TOLERANCE`).
        batch_sizes: The batch sizes of the random inputs.
        pytorch_metrics: Rank-1 and mAP (percent) of the PyTorch model on the subset, if a dataset was given.
        exported_metrics: The same for the exported model.
    """

    max_difference: float
    tolerance: float
    batch_sizes: tuple[int, ...]
    pytorch_metrics: dict[str, float] | None = None
    exported_metrics: dict[str, float] | None = None

    @property
    def passed(self) -> bool:
        """Whether the difference is within the tolerance (a NaN never is)."""
        return self.max_difference <= self.tolerance

    def lines(self) -> list[str]:
        """The report, for the command line."""
        batches = " and ".join(map(str, self.batch_sizes))
        found = [
            f"max |exported - PyTorch| {self.max_difference:.2e} at batch {batches} "
            f"(tolerance {self.tolerance:.2e}): {'match' if self.passed else 'MISMATCH'}"
        ]
        for name, metrics in (("PyTorch", self.pytorch_metrics), ("exported", self.exported_metrics)):
            if metrics is not None:
                found.append(f"{name:>8}: rank-1 {metrics['rank1']:.1f}%  mAP {metrics['mAP']:.1f}%")
        return found


def _preprocessing_size(metadata: dict[str, str]) -> tuple[int, int]:
    return int(metadata["input_height"]), int(metadata["input_width"])


def _unloadable(path: Path, export_format: ExportFormat, error: Exception) -> ExportVerificationError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ExportVerificationError(f"cannot load {path} as {export_format.value}: {reason}")


def _onnx_runner(path: Path) -> tuple[Runner, dict[str, str]]:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's errors derive from Exception alone
        raise _unloadable(path, ExportFormat.ONNX, error) from error
    input_name = session.get_inputs()[0].name

    def run(images: Tensor) -> Tensor:
        (embeddings,) = session.run(None, {input_name: images.numpy()})
        return torch.from_numpy(embeddings)

    return run, dict(session.get_modelmeta().custom_metadata_map)


def _load_runner(
    path: Path, export_format: ExportFormat, reference: STADBNet
) -> tuple[Runner, tuple[int, int]]:
    """The exported model as a function of a CPU batch, and its input size."""
    if export_format is ExportFormat.FOLDER:
        network, config = load_model_folder(STADBNet, path)
        return network, (config.height, config.width)
    try:
        if export_format is ExportFormat.SAFETENSORS:
            network = copy.deepcopy(reference)
            load_weights(network, path)  # a mismatching file is refused here, naming the tensor
            run: Runner = network
            with safe_open(str(path), "pt") as file:
                metadata = file.metadata()
        elif export_format is ExportFormat.TORCHSCRIPT:
            extra_files = {PREPROCESSING_FILE: ""}
            run = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
            metadata = json.loads(extra_files[PREPROCESSING_FILE])
        else:
            run, metadata = _onnx_runner(path)
        return run, (int(metadata["input_height"]), int(metadata["input_width"]))
    except ImportError as error:
        raise ConfigError(f"verifying {path} needs {error.name}: pip install {error.name}") from None
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        raise _unloadable(path, export_format, error) from error


def _subset(
    query: Sequence[ReIDSample], gallery: Sequence[ReIDSample]
) -> tuple[list[ReIDSample], list[ReIDSample]]:
    """The first queries, and a gallery holding their identities' images first, so most can match."""
    num_query, num_gallery = SUBSET_SIZES
    queries = list(query[:num_query])
    identities = {sample.pid for sample in queries}
    matching = [sample for sample in gallery if sample.pid in identities]
    others = [sample for sample in gallery if sample.pid not in identities]
    return queries, (matching + others)[:num_gallery]


def _embed(run: Runner, samples: list[ReIDSample], size: tuple[int, int]) -> Tensor:
    loader = DataLoader(ImageDataset(samples, build_test_transform(*size)), batch_size=BATCH_SIZES[-1])
    with torch.no_grad():
        return torch.cat([run(images).float() for images, _, _ in loader])


def _rank(
    query: Tensor, gallery: Tensor, queries: list[ReIDSample], found: list[ReIDSample]
) -> dict[str, float]:
    labels = [[getattr(s, key) for s in samples] for key in ("pid", "camid") for samples in (queries, found)]
    try:
        summary = evaluate_from_features(query, gallery, *labels, max_rank=1).summary()
    except ValueError as error:  # no query of the subset has a match from another camera
        raise ConfigError(f"cannot rank the verification subset: {error}") from error
    return {"rank1": summary["rank1"], "mAP": summary["mAP"]}


def _difference(expected: Tensor, found: Tensor, path: Path) -> float:
    if found.shape != expected.shape:
        raise ExportVerificationError(
            f"{path} returns embeddings of shape {tuple(found.shape)}, PyTorch {tuple(expected.shape)}"
        )
    return float((found - expected).abs().max())


def verify_export(
    checkpoint_path: Path,
    exported: Path,
    format: ExportFormat | str,
    *,
    ranking: Overrides | None = None,
) -> VerificationReport:
    """Compare the embeddings of an export with those of the checkpoint's PyTorch model.

    Args:
        checkpoint_path: The checkpoint the export was made from.
        exported: The exported file or model folder.
        format: Its :class:`~stadb_reid.commands.export.ExportFormat`.
        ranking: Also rank the first :data:`SUBSET_SIZES` queries and gallery images of a dataset with
            both models: the checkpoint's, with these settings changed (e.g.
            ``Overrides.from_flags(data_root=...)``; empty: the checkpoint's own). ``None``: random
            inputs only.

    Returns:
        The :class:`VerificationReport` of a passing check.

    Raises:
        ExportVerificationError: The export cannot be loaded, gives another shape, or differs by more
            than the tolerance (one line with the difference).
        CheckpointError: The checkpoint is missing or unreadable.
    """
    export_format = ExportFormat(format)
    reference, config, _ = load_trained_model(checkpoint_path, ranking)
    run, size = _load_runner(exported, export_format, reference)
    generator = torch.Generator().manual_seed(0)
    expected: list[Tensor] = []
    found: list[Tensor] = []
    for batch_size in BATCH_SIZES:
        images = torch.randn(batch_size, 3, *size, generator=generator)
        with torch.no_grad():
            expected.append(reference(images))
            found.append(run(images).float())
    metrics: list[dict[str, float]] = []
    if ranking is not None:
        dataset = dataset_from_config(config.data)
        queries, gallery = _subset(dataset.query, dataset.gallery)
        for model, embeddings in ((reference, expected), (run, found)):
            query, gallery_features = _embed(model, queries, size), _embed(model, gallery, size)
            embeddings += [query, gallery_features]
            metrics.append(_rank(query, gallery_features, queries, gallery))
    differences = [_difference(e, f, exported) for e, f in zip(expected, found, strict=True)]
    scale = max(float(e.abs().max()) for e in expected)
    report = VerificationReport(
        max_difference=float(torch.tensor(differences).max()),  # a NaN stays a NaN, and fails
        tolerance=RELATIVE_TOLERANCE * scale,
        batch_sizes=BATCH_SIZES,
        pytorch_metrics=metrics[0] if metrics else None,
        exported_metrics=metrics[1] if metrics else None,
    )
    if not report.passed:
        raise ExportVerificationError(f"{exported} does not match {checkpoint_path}: {report.lines()[0]}")
    return report
