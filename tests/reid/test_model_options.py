"""The model options that reproduce the STADB authors' code: each changes what it names, nothing else."""

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from timm.models.resnet import Bottleneck
from torch import nn

from stadb_layers import CBAM, SE
from stadb_reid.commands.evaluate import load_trained_model
from stadb_reid.config import Config, Variant, config_to_dict, load_config
from stadb_reid.config.files import flatten_config
from stadb_reid.engine import load_checkpoint, train
from stadb_reid.engine.build import build_model
from stadb_reid.engine.preflight import validate_config
from stadb_reid.engine.run_folder import CHECKPOINT_NAME
from stadb_reid.errors import ConfigError, PretrainedWeightsUnavailableError
from stadb_reid.model import STADBNet, TrainOutput
from stadb_reid.model import backbone as backbone_module
from stadb_reid.model.backbone import build_backbone, check_backbone_name
from stadb_reid.model.heads import EmbeddingHead

BACKBONE = "resnet10t"  # 512 channels: the smallest timm ResNet
CHANNELS = 512
IMAGES = torch.randn(2, 3, 32, 16, generator=torch.Generator().manual_seed(0))
FROZEN = {
    "global_head.bottleneck.weight",
    "global_head.bottleneck.bias",
    "branch_head.bottleneck.weight",
    "branch_head.bottleneck.bias",
}
# The authors' CBAM (CBAM.stadb_reference), and non-default values of every other option.
REFERENCE_CBAM = {
    "reduction": 4,
    "kernel_size": 3,
    "spatial_bias": True,
    "spatial_norm": False,
    "pool_order": "avg_max",
    "gates": "channel_spatial",
}
REFERENCE_OPTIONS = {
    "model.extra_bottleneck": False,
    "model.eval_attention": False,
    "model.freeze_bnneck": True,
    "model.classifier_init": "kaiming",
    **{f"model.cbam.{key}": value for key, value in REFERENCE_CBAM.items()},
}


def config_with(**model: Any) -> Config:
    return load_config([], {"model.backbone": BACKBONE, "model.pretrained": False, **model})


def network(seed: int = 0, **options: Any) -> STADBNet:
    torch.manual_seed(seed)
    return STADBNet(5, backbone=BACKBONE, **options)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def embedding(model: STADBNet) -> torch.Tensor:
    with torch.no_grad():
        output = model.eval()(IMAGES)
    assert isinstance(output, torch.Tensor)
    return output


@pytest.mark.parametrize(
    "variant", [Variant.STADB, Variant.GLOBAL_DROP, Variant.GLOBAL_ATTENTION, Variant.BDB]
)
def test_without_extra_bottleneck_the_block_is_absent(variant: Variant) -> None:
    with_block, without = network(variant=variant), network(variant=variant, extra_bottleneck=False)
    assert with_block.branch is not None and without.branch is not None
    assert not any(isinstance(m, Bottleneck) for m in without.branch.modules())
    assert isinstance(without.branch.extra_bottleneck, nn.Identity)
    assert count(with_block) - count(without) == count(Bottleneck(CHANNELS, CHANNELS // 4))
    # The regulariser keeps its keys: only the Bottleneck's branch.0.* are gone.
    keys = set(without.state_dict())
    assert keys == {k for k in with_block.state_dict() if not k.startswith("branch.0.")}


def test_without_extra_bottleneck_the_regulariser_takes_the_backbone_output() -> None:
    without = network(extra_bottleneck=False)
    reference = network()
    reference.load_state_dict(without.state_dict(), strict=False)
    assert reference.branch is not None
    reference.branch[0] = nn.Identity()
    torch.testing.assert_close(embedding(without), embedding(reference), rtol=0, atol=0)


def test_without_eval_attention_the_embedding_skips_the_attention() -> None:
    skipping, attending = network(eval_attention=False), network()
    attending.load_state_dict(skipping.state_dict())
    assert skipping.branch is not None and skipping.branch_head is not None
    assert skipping.global_head is not None
    with torch.no_grad():
        skipping.eval()
        feature_map = skipping.backbone(IMAGES)
        pooled = skipping.branch.extra_bottleneck(feature_map).amax(dim=(2, 3))
        expected = torch.cat([skipping.global_head(feature_map), skipping.branch_head(pooled)], dim=1)
    actual, with_attention = embedding(skipping), embedding(attending)
    torch.testing.assert_close(actual, expected)
    torch.testing.assert_close(actual[:, :512], with_attention[:, :512], rtol=0, atol=0)
    assert not torch.allclose(actual[:, 512:], with_attention[:, 512:])


def test_without_eval_attention_training_still_runs_the_attention() -> None:
    # rho = 0: every training step draws the attention branch, in both models.
    skipping, attending = network(eval_attention=False, rho=0.0), network(rho=0.0)
    attending.load_state_dict(skipping.state_dict())
    outputs = [model.train()(IMAGES) for model in (skipping, attending)]
    assert all(isinstance(output, TrainOutput) for output in outputs)
    for left, right in zip(outputs[0].features, outputs[1].features, strict=True):
        torch.testing.assert_close(left, right, rtol=0, atol=0)


@pytest.mark.parametrize("variant", [Variant.GLOBAL, Variant.GLOBAL_DROP, Variant.BDB])
def test_eval_attention_changes_nothing_without_an_attention_module(variant: Variant) -> None:
    off, on = network(variant=variant, eval_attention=False), network(variant=variant)
    on.load_state_dict(off.state_dict())
    torch.testing.assert_close(embedding(off), embedding(on), rtol=0, atol=0)


def test_eval_attention_off_is_refused_where_only_attention_runs() -> None:
    with pytest.raises(ValueError, match="needs the stadb variant"):
        network(variant=Variant.GLOBAL_ATTENTION, eval_attention=False)
    config = config_with(**{"model.variant": "global_attention", "model.eval_attention": False})
    with pytest.raises(ConfigError, match=r"^model.eval_attention=false needs model.variant stadb"):
        validate_config(config)


@pytest.mark.parametrize(
    ("variant", "frozen"),
    [
        (Variant.STADB, FROZEN),
        (Variant.GLOBAL, {"global_head.bottleneck.weight", "global_head.bottleneck.bias"}),
    ],
)
def test_freeze_bnneck_leaves_exactly_the_classifier_batchnorms_out(
    variant: Variant, frozen: set[str]
) -> None:
    model = build_model(config_with(**{"model.variant": variant.value, "model.freeze_bnneck": True}), 5)
    trainable = {id(p) for p in model.trainable_parameters()}
    assert {name for name, p in model.named_parameters() if id(p) not in trainable} == frozen
    default = build_model(config_with(), 5)
    assert len(default.trainable_parameters()) == len(list(default.parameters()))


def test_frozen_batchnorms_keep_their_initial_affine_through_a_step() -> None:
    model = build_model(config_with(**{"model.freeze_bnneck": True}), 5).train()
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=0.1, weight_decay=5e-4)
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert not {id(named[name]) for name in FROZEN} & optimised
    before = {name: p.detach().clone() for name, p in named.items()}
    assert model.global_head is not None
    statistics = model.global_head.bottleneck.running_mean
    assert statistics is not None
    running_mean = statistics.clone()
    output = model(IMAGES)
    assert isinstance(output, TrainOutput)
    loss = sum(nn.functional.cross_entropy(logits, torch.tensor([0, 1])) for logits in output.logits)
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    optimizer.step()
    for name in FROZEN:
        assert torch.equal(named[name], before[name]), name
    assert torch.equal(named["global_head.bottleneck.weight"], torch.ones(512))
    assert not torch.equal(named["global_head.classifier.weight"], before["global_head.classifier.weight"])
    # Batch statistics still normalise and still update the running estimates.
    assert not torch.equal(statistics, running_mean)


@pytest.mark.parametrize(("feature_dim", "num_classes"), [(64, 2000), (2000, 64)])
def test_kaiming_classifier_init_is_fan_out(feature_dim: int, num_classes: int) -> None:
    torch.manual_seed(0)
    kaiming = EmbeddingHead(nn.Identity(), feature_dim, num_classes, classifier_init="kaiming").classifier
    normal = EmbeddingHead(nn.Identity(), feature_dim, num_classes).classifier
    # fan_out of a (num_classes, feature_dim) weight is num_classes; gain sqrt(2) (a=0).
    assert kaiming.weight.std().item() == pytest.approx(math.sqrt(2 / num_classes), rel=0.03)
    assert abs(kaiming.weight.mean().item()) < 4 * math.sqrt(2 / num_classes) / math.sqrt(
        feature_dim * num_classes
    )
    assert normal.weight.std().item() == pytest.approx(0.001, rel=0.03)
    assert torch.count_nonzero(kaiming.bias) == 0 and torch.count_nonzero(normal.bias) == 0


def test_classifier_init_reaches_both_heads() -> None:
    model = build_model(config_with(**{"model.classifier_init": "kaiming"}), 300)
    assert model.global_head is not None and model.branch_head is not None
    for head in (model.global_head, model.branch_head):
        assert head.classifier.weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.05)


@pytest.mark.parametrize("name", ["resnet50", "resnet50.tv_in1k", "resnet50.a1_in1k", "resnet18.tv_in1k"])
def test_known_weight_tags_are_accepted(name: str) -> None:
    check_backbone_name(name)
    validate_config(load_config([], {"model.backbone": name}))


def test_a_tag_keeps_the_architecture() -> None:
    tagged, plain = build_backbone("resnet18.tv_in1k"), build_backbone("resnet18")
    assert {k: v.shape for k, v in tagged.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "resnet50.tv9_in1k",
            r"^model.backbone 'resnet50.tv9_in1k': timm has no weights tagged tv9_in1k .*tv_in1k",
        ),
        ("vit_small_patch16_224.augreg_in21k", r"^model.backbone must be a timm ResNet"),
        ("resnet51x.tv_in1k", r"^model.backbone must be a timm ResNet"),
    ],
)
def test_bad_backbone_names_fail_in_one_line(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        validate_config(load_config([], {"model.backbone": name}))
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=message.replace("model.backbone", "backbone")):
        build_backbone(name)


def test_pretrained_tag_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backbone_module, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"resnet50\.tv_in1k"):
        build_backbone("resnet50.tv_in1k", pretrained=True)


def test_cbam_options_reach_the_module() -> None:
    options = {f"model.cbam.{key}": value for key, value in REFERENCE_CBAM.items()}
    model = build_model(config_with(**options), 5)
    assert model.branch is not None
    attention = model.branch.attention
    reference = CBAM.stadb_reference(CHANNELS)
    assert isinstance(attention, CBAM) and attention.extra_repr() == reference.extra_repr()
    shapes = {k: v.shape for k, v in attention.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}


def test_cbam_options_leave_other_attention_modules_alone() -> None:
    model = build_model(config_with(**{"model.attention": "se", "model.cbam.reduction": 4}), 5)
    assert model.branch is not None and isinstance(model.branch.attention, SE)
    assert model.branch.attention.hidden_channels == CHANNELS // 16


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("pool_order", "mean_max", "model.cbam.pool_order must be one of"),
        ("gates", "both", "model.cbam.gates must be one of"),
        ("kernel_size", 4, "model.cbam.kernel_size must be odd"),
        ("reduction", 0, "model.cbam.reduction must be a positive integer"),
    ],
)
def test_bad_cbam_options_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        validate_config(config_with(**{f"model.cbam.{key}": value}))


def test_checkpoints_of_older_configs_rebuild_the_default_model() -> None:
    stored = config_to_dict(load_config())
    new_keys = ["extra_bottleneck", "eval_attention", "freeze_bnneck", "classifier_init", "cbam"]
    for key in new_keys:
        del stored["model"][key]
    rebuilt = load_config([], flatten_config(stored)).model
    assert rebuilt == load_config().model


def test_checkpoint_round_trip_with_the_reference_options(tmp_path: Path) -> None:
    synthetic = {
        "num_train_identities": 3,
        "num_test_identities": 2,
        "num_cameras": 2,
        "images_per_identity_per_camera": 2,
        "num_distractors": 0,
        "height": 32,
        "width": 16,
    }
    settings = {
        "data.dataset": "synthetic",
        "data.root": str(tmp_path / "synthetic"),
        "data.options": synthetic,
        "data.height": 32,
        "data.width": 16,
        "data.num_identities": 3,
        "data.num_instances": 2,
        "data.num_workers": 0,
        "data.test_batch_size": 8,
        "model.backbone": "resnet10t.c3_in1k",
        "model.pretrained": False,
        "optim.epochs": 1,
        "optim.warmup_epochs": 1,
        "optim.warmup_step": 1,
        "output_dir": str(tmp_path / "run"),
        **REFERENCE_OPTIONS,
    }
    config = load_config([], settings)
    train(config, progress=False, log=lambda _: None)
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint)
    # The trainer's optimiser left the frozen BatchNorms at their initial affine.
    for name in FROZEN:
        assert torch.count_nonzero(state["model"][name] - (1.0 if name.endswith("weight") else 0.0)) == 0
    model, stored, _ = load_trained_model(checkpoint)
    assert dataclasses.asdict(stored.model) == dataclasses.asdict(config.model)
    assert model.branch is not None and not any(isinstance(m, Bottleneck) for m in model.modules())
    assert model.selector is not None and model.selector.eval_branch == 0
    rebuilt = build_model(config, state["num_classes"], pretrained=False)
    rebuilt.load_state_dict(state["model"])
    torch.testing.assert_close(embedding(model), embedding(rebuilt), rtol=0, atol=0)
