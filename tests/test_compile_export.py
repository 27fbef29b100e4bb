"""Every layer under torch.jit.script and ONNX export (eval mode).

``torch.compile(fullgraph=True)`` is run once per layer by ``BaseLayerTests.test_compile``
(tests/layer_testing.py), which every layer's test class inherits.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from stadb_layers import (
    CBAM,
    SE,
    SRM,
    BatchDrop,
    RandomBranchSelector,
    SelfThresholdDrop,
    SoftMarginBatchHardTriplet,
    TripletAttention,
)

CHANNELS = 16


def selector() -> RandomBranchSelector:
    return RandomBranchSelector([SelfThresholdDrop(), CBAM(CHANNELS, reduction=4)], [0.25, 0.75], 1, seed=0)


FEATURE_MAP_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "SelfThresholdDrop": lambda: SelfThresholdDrop(0.8),
    "SelfThresholdDrop-ratio": lambda: SelfThresholdDrop(drop_ratio=0.2),
    "BatchDrop": lambda: BatchDrop(0.3, 0.6),
    "CBAM": lambda: CBAM(CHANNELS, reduction=4),
    "SE": lambda: SE(CHANNELS, reduction=4),
    "SRM": lambda: SRM(CHANNELS),
    "TripletAttention": lambda: TripletAttention(CHANNELS),
    "RandomBranchSelector": selector,
}
# The selector's training-mode draw comes from a torch.Generator, which TorchScript cannot compile, and
# BatchDrop draws a new block on every call; their eval mode (the deployed form) is covered in every mode
# below.
TRAINING_MODE_LAYERS = [
    name for name in FEATURE_MAP_LAYERS if name not in ("RandomBranchSelector", "BatchDrop")
]


def feature_map() -> torch.Tensor:
    return torch.randn(2, CHANNELS, 7, 5, generator=torch.Generator().manual_seed(0))


def twin_modules(name: str, training: bool) -> tuple[nn.Module, nn.Module]:
    """Two identical instances, so running one does not change the other's BN statistics."""
    reference = FEATURE_MAP_LAYERS[name]()
    twin = FEATURE_MAP_LAYERS[name]()
    twin.load_state_dict(reference.state_dict())
    return reference.train(training), twin.train(training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", FEATURE_MAP_LAYERS)
def test_jit_script_matches_eager(name: str, training: bool) -> None:
    if training and name not in TRAINING_MODE_LAYERS:
        pytest.skip("a random draw per call: the scripted and eager layers would draw differently")
    reference, twin = twin_modules(name, training)
    scripted = torch.jit.script(twin)
    torch.testing.assert_close(scripted(feature_map()), reference(feature_map()))


def test_jit_scripted_selector_refuses_training_mode() -> None:
    scripted = torch.jit.script(selector().train())
    with pytest.raises(torch.jit.Error, match="annotated to be ignored"):
        scripted(feature_map())


@pytest.mark.parametrize("name", ["CBAM", "SE", "SRM", "TripletAttention"])
def test_channel_check_survives_script_and_compile(name: str) -> None:
    # The checks read shapes only, so they stay in the scripted and compiled forms. (With
    # fullgraph=True, Dynamo reports any raise as an "Observed exception" graph break instead.)
    module = FEATURE_MAP_LAYERS[name]().eval()
    wrong = torch.randn(2, CHANNELS // 2, 7, 5)
    message = f"{name} was built for channels={CHANNELS}, got x with {CHANNELS // 2} channels"
    with pytest.raises(torch.jit.Error, match=message):
        torch.jit.script(module)(wrong)
    with pytest.raises(ValueError, match=message):
        torch.compile(module)(wrong)


@pytest.mark.parametrize("name", FEATURE_MAP_LAYERS)
def test_onnx_export_eval_mode_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    module = FEATURE_MAP_LAYERS[name]().eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module, (feature_map(),), str(path), input_names=["x"], output_names=["y"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"x": feature_map().numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(output), module(feature_map()), rtol=1e-5, atol=1e-5)


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 8, generator=generator), torch.arange(4).repeat_interleave(3)


@pytest.mark.parametrize("margin", [None, 0.3])
def test_triplet_loss_script(margin: float | None) -> None:
    features, labels = embeddings()
    loss = SoftMarginBatchHardTriplet(margin=margin)
    scripted = torch.jit.script(loss)
    torch.testing.assert_close(scripted(features, labels), loss(features, labels))
    features[3, 1] = float("nan")  # non-finite features propagate in the scripted form too
    assert scripted(features, labels).isnan()
