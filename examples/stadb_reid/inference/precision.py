"""How the extractor's network runs: ``fp32``, ``bf16``, ``onnx`` (ONNX Runtime), or ``auto``.

* ``fp32``: the eager network in float32, the reference every other path is checked against.
* ``bf16``: every BatchNorm that follows a convolution or linear layer folded into it, the weights
  converted to bfloat16 once, channels-last memory, bfloat16 activations; the embeddings come back
  as float32. Folding saves the BatchNorm passes (10 % of the bf16 network's time in a profile).
  Fast only where the hardware computes bf16 (AVX512-BF16 or AMX on x86, CUDA GPUs from Ampere
  on); elsewhere oneDNN emulates it and it is several times slower.
* ``onnx``: the eval-mode network exported once per process with ``torch.onnx.export`` (dynamo) and
  run by ONNX Runtime in float32 (graph optimisations on, the process's torch thread count): 1.21x
  to 1.34x fp32 eager on 2-vCPU AMD EPYCs (Zen 4; AVX2 only) in a process that keeps freed memory
  (:func:`~stadb_reid.inference.keep_freed_memory`, as the commands do), 2.49x without.
  ``benchmarks/extract.py`` measures it against ``torch.compile(freezing)`` and OpenVINO side by side.
* ``auto`` (the default): on CUDA ``bf16`` where the GPU supports it; on a CPU ``bf16`` where it has
  native bf16. Elsewhere ``onnx`` when the caller says it is about to embed at least
  :data:`AUTO_ONNX_MIN_IMAGES` images (``index`` and ``extract`` do) and onnxruntime is installed,
  else ``fp32`` with a channels-last copy of the network (1.15x to 1.20x the reference's speed on
  the EPYCs of ``benchmarks/RESULTS.md``): the export takes seconds in every process, which a
  large gallery earns back but a ``search`` of a few queries does not.
  A ``bf16`` or ``onnx`` choice is then checked on a probe batch of synthetic people at the model's
  input size: an embedding whose cosine similarity to fp32 is under :data:`PARITY_COSINE` makes
  ``auto`` fall back to ``fp32``.
  :attr:`ReIDExtractor.precision` names what was chosen and why.

int8 is not offered: see ``benchmarks/RESULTS.md`` ("Extraction speed").
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse

from ..errors import ConfigError

__all__ = [
    "AUTO_ONNX_MIN_IMAGES",
    "PARITY_COSINE",
    "PRECISIONS",
    "Precision",
    "Runtime",
    "build_runtime",
    "cpu_has_native_bf16",
    "onnx_program",
]

Precision = Literal["auto", "fp32", "bf16", "onnx"]
"""A precision choice of :class:`~stadb_reid.inference.ReIDExtractor`; see the module docstring."""

PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "onnx")
#: Smallest cosine similarity to fp32 an embedding of ``auto``'s probe batch may have.
PARITY_COSINE = 0.999
#: Images a run must be about to embed for ``auto`` to export to ONNX Runtime on a CPU without native
#: bf16. On a 2-vCPU AMD EPYC (``benchmarks/extract.py``, 384 x 128) the export of the ResNet-50
#: network took 7 to 10 s and ONNX Runtime then saved 14 to 18 ms an image against fp32 eager (1.21x
#: to 1.26x): the export is earned back after 400 to 750 images, about three times over at this many.
AUTO_ONNX_MIN_IMAGES = 2000


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); ``None`` where torch cannot tell.

    Without it oneDNN emulates bf16, and bf16 autocast is far slower than fp32: on a 2-core AVX2 VM a
    ResNet-50 step at 64 x 32, batch 64, took about 36 s in bf16 against 2 s in fp32.
    """
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    found = get_capabilities() if get_capabilities is not None else {}
    if found.get("architecture") != "x86_64":
        return None
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


@dataclass(frozen=True)
class Runtime:
    """A way to run the network: ``run`` maps a normalised float32 batch to float32 embeddings.

    Attributes:
        name: ``fp32``, ``bf16`` or ``onnx``.
        reason: Why ``auto`` chose it (empty when it was asked for).
    """

    name: str
    run: Callable[[Tensor], Tensor]
    reason: str = ""


def _eager(network: nn.Module, channels_last: bool = False) -> Runtime:
    """fp32 eager; ``channels_last`` runs a channels-last copy of ``network`` on channels-last input."""
    if channels_last:
        network = copy.deepcopy(network).to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            embeddings: Tensor = network(x).float()
        return embeddings

    return Runtime("fp32", run)


def _fold_batch_norms(module: nn.Module) -> nn.Module:
    """``module`` with each BatchNorm that follows a convolution or linear layer folded into it.

    fx traces the largest submodules it can: a layer that checks its input in Python cannot be
    traced, nor can a container, so their children are tried instead (replaced in place). Eval mode.
    """
    try:
        return fuse(module)
    except Exception:  # fx fails in many ways (TraceError, KeyError, ...): whatever it is, go one level down
        for name, child in module.named_children():
            setattr(module, name, _fold_batch_norms(child))
        return module


def _bf16(network: nn.Module, device: torch.device) -> Runtime:
    low = _fold_batch_norms(copy.deepcopy(network).eval()).to(dtype=torch.bfloat16)
    channels_last = device.type == "cpu"
    if channels_last:
        low = low.to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        x = x.to(torch.bfloat16)
        with torch.inference_mode():
            embeddings: Tensor = low(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        return embeddings.float()

    return Runtime("bf16", run)


def onnx_program(network: nn.Module, example: Tensor) -> torch.onnx.ONNXProgram:
    """``network`` exported to ONNX (dynamo): input ``images`` with a dynamic batch, output ``embeddings``.

    The one export of the embedding network: ``export --format onnx`` saves it, ``precision="onnx"``
    runs it in ONNX Runtime.
    """
    program = torch.onnx.export(
        network,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["embeddings"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    assert program is not None  # returned when no file name is given
    return program


def _onnx(network: nn.Module, height: int, width: int) -> Runtime:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        raise ConfigError("precision onnx needs onnxruntime: pip install onnxruntime") from None
    program = onnx_program(network, torch.zeros(2, 3, height, width))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )

    def run(x: Tensor) -> Tensor:
        (out,) = session.run(["embeddings"], {"images": x.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(out)

    return Runtime("onnx", run)


def _auto_choice(device: torch.device, expected_images: int | None) -> tuple[Precision, str]:
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "a CUDA GPU with bf16"
        return "fp32", "a CUDA GPU without bf16"
    if cpu_has_native_bf16():
        return "bf16", "the CPU has native bf16 (AVX512-BF16 or AMX)"
    if expected_images is None or expected_images < AUTO_ONNX_MIN_IMAGES:
        return "fp32", (
            "no native bf16 on this CPU, so fp32 channels-last; ONNX Runtime's export pays off from "
            f"{AUTO_ONNX_MIN_IMAGES:,} images (--precision onnx)"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        return "fp32", (
            "no native bf16 on this CPU, so fp32 channels-last; no onnxruntime (pip install onnxruntime: "
            "faster here)"
        )
    return (
        "onnx",
        f"no native bf16 on this CPU; {expected_images:,} images to embed earn back the ONNX export",
    )


def build_runtime(
    network: nn.Module,
    precision: Precision | str,
    device: torch.device,
    height: int,
    width: int,
    probe: Callable[[], Tensor],
    expected_images: int | None = None,
) -> Runtime:
    """The runtime of ``precision`` for the eval-mode ``network`` on ``device``.

    Args:
        network: The eval-mode network, on ``device`` (kept as the fp32 path).
        precision: One of :data:`PRECISIONS`.
        device: Where it runs.
        height: Input height (the ONNX export's example).
        width: Input width.
        probe: A normalised batch on ``device`` on which ``auto`` checks parity with fp32.
        expected_images: How many images the runtime is about to embed, if known (``auto`` exports
            to ONNX Runtime only for a large run).

    Raises:
        ConfigError: An unknown ``precision``, ``onnx`` on CUDA or without onnxruntime.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "onnx" and device.type != "cpu":
        raise ConfigError("precision onnx runs on the CPU (ONNX Runtime's CPU provider); use bf16 on CUDA")
    chosen, reason = _auto_choice(device, expected_images) if precision == "auto" else (precision, "")
    reference = _eager(network)
    if chosen == "fp32":
        # auto's fp32 on a CPU is channels-last: the same float32 arithmetic in another memory order,
        # so it is not probed (a probe would add seconds to a search of one image)
        if precision == "auto" and device.type == "cpu":
            return Runtime("fp32", _eager(network, channels_last=True).run, reason)
        return Runtime("fp32", reference.run, reason)
    runtime = _bf16(network, device) if chosen == "bf16" else _onnx(network, height, width)
    if precision != "auto":
        return runtime
    x = probe()
    cosine = F.cosine_similarity(runtime.run(x), reference.run(x), dim=1).min().item()
    if not cosine >= PARITY_COSINE:  # a NaN cosine misses parity too
        why = f"{chosen} missed parity on the probe batch (cosine {cosine:.4f} < {PARITY_COSINE})"
        return Runtime("fp32", reference.run, why)
    return Runtime(chosen, runtime.run, f"{reason}; smallest probe cosine to fp32 {cosine:.5f}")
