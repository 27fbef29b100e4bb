from pathlib import Path

import pytest
import torch
from timm.models.resnet import Bottleneck

from stadb_layers import CBAM, SE, SRM, BatchDrop, RandomBranchSelector, SelfThresholdDrop, TripletAttention
from stadb_reid.config import Variant
from stadb_reid.errors import PretrainedWeightsUnavailableError
from stadb_reid.model import STADBNet, TrainOutput
from stadb_reid.model import backbone as backbone_module

# The ImageNet fc layer (2048 x 1000 + 1000) that the reference code's torchvision ResNet-50 keeps.
UNUSED_IMAGENET_FC = 2048 * 1000 + 1000


@pytest.fixture(scope="module")
def stadb() -> STADBNet:
    torch.manual_seed(0)
    return STADBNet(751)


def test_shapes_train_and_eval(stadb: STADBNet) -> None:
    images = torch.randn(2, 3, 384, 128)
    assert stadb.backbone(images).shape == (2, 2048, 24, 8), "last stride 1"
    stadb.train()
    output = stadb(images)
    assert isinstance(output, TrainOutput)
    assert [f.shape for f in output.features] == [(2, 512), (2, 1024)]
    assert [logits.shape for logits in output.logits] == [(2, 751), (2, 751)]
    stadb.eval()
    embedding = stadb(images)
    assert isinstance(embedding, torch.Tensor) and embedding.shape == (2, 1536) == (2, stadb.embedding_dim)


def test_eval_embedding_runs_the_attention_branch(stadb: STADBNet) -> None:
    stadb.eval()
    selector = stadb.selector
    assert selector is not None
    assert isinstance(selector.branches[0], SelfThresholdDrop) and isinstance(selector.branches[1], CBAM)
    assert selector.probs == (0.25, 0.75)
    stadb(torch.randn(1, 3, 64, 32))
    assert selector.last_branch == 1


def test_parameter_count_matches_the_paper_with_the_unused_fc(stadb: STADBNet) -> None:
    num_parameters = sum(p.numel() for p in stadb.parameters())
    assert 32.5e6 < num_parameters < 33.0e6
    # The paper's 34.8-35.8 M: the reference code counts torchvision's unused ImageNet classifier.
    assert 34.8e6 <= num_parameters + UNUSED_IMAGENET_FC <= 35.8e6


@pytest.mark.parametrize(
    ("variant", "regulariser", "embedding_dim"),
    [
        (Variant.ATTENTION, CBAM, 1024),
        (Variant.DROP, RandomBranchSelector, 1024),
        (Variant.GLOBAL, None, 512),
        (Variant.GLOBAL_DROP, RandomBranchSelector, 1536),
        (Variant.GLOBAL_ATTENTION, CBAM, 1536),
        (Variant.BDB, BatchDrop, 1536),
    ],
)
def test_ablation_variants(variant: Variant, regulariser: type | None, embedding_dim: int) -> None:
    model = STADBNet(10, variant=variant, backbone="resnet18")
    if regulariser is None:
        assert model.branch is None
    else:
        assert model.branch is not None and isinstance(model.branch.regulariser, regulariser)
    assert model.embedding_dim == embedding_dim
    assert (model.global_head is None) == (variant in (Variant.ATTENTION, Variant.DROP))
    model.train()
    output = model(torch.randn(2, 3, 64, 32))
    assert isinstance(output, TrainOutput) and len(output.features) == len(model.heads)
    assert sum(feature.shape[1] for feature in output.features) == embedding_dim
    assert tuple(model.eval()(torch.randn(2, 3, 64, 32)).shape) == (2, embedding_dim)


@pytest.mark.parametrize(("name", "cls"), [("se", SE), ("srm", SRM), ("triplet", TripletAttention)])
def test_attention_choices(name: str, cls: type) -> None:
    model = STADBNet(10, attention=name, backbone="resnet18")
    assert model.selector is not None and isinstance(model.selector.branches[1], cls)


@pytest.mark.parametrize(
    ("variant", "drop", "attention"),
    [
        (Variant.STADB, SelfThresholdDrop, CBAM),
        (Variant.GLOBAL_DROP, SelfThresholdDrop, None),
        (Variant.GLOBAL_ATTENTION, None, CBAM),
        (Variant.DROP, SelfThresholdDrop, None),
        (Variant.ATTENTION, None, CBAM),
        (Variant.BDB, None, None),
    ],
)
def test_second_head_parts_by_name(variant: Variant, drop: type | None, attention: type | None) -> None:
    model = STADBNet(10, variant=variant, backbone="resnet18")
    branch = model.branch
    assert branch is not None
    assert branch.extra_bottleneck is branch[0] and branch.regulariser is branch[1]
    assert isinstance(branch.extra_bottleneck, Bottleneck)
    assert (branch.threshold_drop is None) if drop is None else isinstance(branch.threshold_drop, drop)
    assert (branch.attention is None) if attention is None else isinstance(branch.attention, attention)
    assert branch.selector is model.selector
    assert (model.selector is None) == (variant in (Variant.GLOBAL_ATTENTION, Variant.ATTENTION, Variant.BDB))


def test_state_dict_keys_of_the_second_head_are_positional() -> None:
    # Checkpoints written before the parts had names must still load: the keys stay branch.0 / branch.1.
    keys = list(STADBNet(10, backbone="resnet18").state_dict())
    branch_keys = [key for key in keys if key.startswith("branch.")]
    assert branch_keys and all(key.startswith(("branch.0.", "branch.1.")) for key in branch_keys)
    assert {
        "branch.0.conv1.weight",
        "branch.1._extra_state",
        "branch.1.branches.1.spatial_gate.conv.weight",
    } <= set(keys)


def test_pretrained_offline_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbone_module, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"--no-pretrained.*--weights FILE"):
        STADBNet(10, pretrained=True)


def test_hub_probe_is_quick_offline() -> None:
    # No network here; the probe must answer instead of retrying for a minute like a download.
    assert isinstance(backbone_module._hub_reachable(timeout=1.0), bool)


def test_local_weights_file_is_loaded(tmp_path: Path) -> None:
    source = STADBNet(10, backbone="resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.backbone.state_dict(), path)
    loaded = STADBNet(10, backbone="resnet18", weights=path)
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value)


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ("missing.pth", FileNotFoundError, "weights file not found"),
        ("weights.txt", ValueError, "weights must be"),
    ],
)
def test_bad_weights_file(tmp_path: Path, weights: str, error: type, message: str) -> None:
    (tmp_path / "weights.txt").write_text("not weights")
    with pytest.raises(error, match=message):
        STADBNet(10, backbone="resnet18", weights=tmp_path / weights)
