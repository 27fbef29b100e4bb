"""Tests of CBAM's options (bias, norm, pool order, gates) and of the STADB authors' preset.

The references are written here with ``torch.nn.functional``, the channel MLP as the 1x1 convolutions of
the authors' ``models/networks.py`` (wangxiao5791509/STADB_ReID), so they share no code with the layers.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from stadb_layers import CBAM, create_attention
from stadb_layers.cbam import ChannelGate
from stadb_layers.spatial_gate import SpatialGate, z_pool

from .layer_testing import BadInput, BaseLayerTests, feature_map_bad_inputs
from .test_attention import Shape, bn_ref, randn, randomize_

FAST = settings(deadline=None, max_examples=25)
shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 6), st.integers(1, 6))
seeds = st.integers(0, 2**31 - 1)
options = st.fixed_dictionaries(
    {
        "reduction": st.integers(1, 16),
        "kernel_size": st.sampled_from([1, 3, 5]),
        "spatial_bias": st.booleans(),
        "spatial_norm": st.booleans(),
        "pool_order": st.sampled_from(["max_mean", "avg_max"]),
        "gates": st.sampled_from(["channel_spatial", "channel", "spatial"]),
    }
)
# The preset, spelled out independently of the library.
AUTHORS = {
    "reduction": 4,
    "kernel_size": 3,
    "spatial_bias": True,
    "spatial_norm": False,
    "pool_order": "avg_max",
}


def channel_ref(x: Tensor, gate: ChannelGate) -> Tensor:
    """The authors' channel attention: 1x1 convolutions on the avg and max pools, summed, sigmoid."""
    w1, b1 = gate.fc1.weight[:, :, None, None], gate.fc1.bias
    w2, b2 = gate.fc2.weight[:, :, None, None], gate.fc2.bias
    avg, mx = F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)
    logits = F.conv2d(F.relu(F.conv2d(avg, w1, b1)), w2, b2) + F.conv2d(F.relu(F.conv2d(mx, w1, b1)), w2, b2)
    return x * torch.sigmoid(logits)


def spatial_ref(x: Tensor, gate: SpatialGate, pool_order: str, training: bool) -> Tensor:
    """sigmoid(norm(conv2d(cat(avg, max) or cat(max, avg)) + bias)), the norm a batch norm or nothing."""
    avg, mx = torch.mean(x, 1, True), torch.max(x, 1, True)[0]
    pooled = torch.cat((avg, mx) if pool_order == "avg_max" else (mx, avg), 1)
    k = gate.conv.weight.shape[-1]
    z = F.conv2d(pooled, gate.conv.weight, gate.conv.bias, padding=(k - 1) // 2)
    if isinstance(gate.bn, nn.BatchNorm2d):
        z = bn_ref(z, gate.bn, training)
    return x * torch.sigmoid(z)


def cbam_ref(x: Tensor, m: CBAM, config: dict[str, Any], training: bool) -> Tensor:
    if config["gates"] != "spatial":
        assert m.channel_gate is not None
        x = channel_ref(x, m.channel_gate)
    if config["gates"] != "channel":
        assert m.spatial_gate is not None
        x = spatial_ref(x, m.spatial_gate, config["pool_order"], training)
    return x


def expected_parameters(channels: int, config: dict[str, Any]) -> int:
    hidden = max(1, channels // config["reduction"])
    mlp = 2 * channels * hidden + hidden + channels
    spatial = 2 * config["kernel_size"] ** 2 + config["spatial_bias"] + 2 * config["spatial_norm"]
    return {"channel_spatial": mlp + spatial, "channel": mlp, "spatial": spatial}[config["gates"]]


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------------
# Every option against the reference
# ---------------------------------------------------------------------------------------------------------


@FAST
@given(config=options, shape=shapes, train=st.booleans(), seed=seeds)
def test_options_match_reference(config: dict[str, Any], shape: Shape, train: bool, seed: int) -> None:
    training = train and shape[0] > 1  # batch statistics need two samples
    m = randomize_(CBAM(shape[1], dtype=torch.float64, **config), seed).train(training)
    x = randn(shape, torch.float64, seed)
    torch.testing.assert_close(m(x), cbam_ref(x, m, config, training), atol=1e-12, rtol=1e-12)


@FAST
@given(config=options, channels=st.integers(1, 40))
def test_parameter_count(config: dict[str, Any], channels: int) -> None:
    m = CBAM(channels, **config)
    assert parameter_count(m) == expected_parameters(channels, config)
    assert len(list(m.buffers())) == (3 if config["spatial_norm"] and config["gates"] != "channel" else 0)


def test_parameter_count_reduction_4_versus_16() -> None:
    assert parameter_count(CBAM(2048)) == 526_564  # 2*2048*128 + 128 + 2048 + 98 + 2
    assert parameter_count(CBAM(2048, reduction=4)) == 2_099_812  # 2*2048*512 + 512 + 2048 + 98 + 2
    assert parameter_count(CBAM.stadb_reference(2048)) == 2_099_731  # 2*2048*512 + 512 + 2048 + 18 + 1


@FAST
@given(shape=shapes, seed=seeds)
def test_pool_order_only_swaps_the_convolution_inputs(shape: Shape, seed: int) -> None:
    a = randomize_(SpatialGate(3, pool_order="avg_max", norm=False, bias=True, dtype=torch.float64), seed)
    b = SpatialGate(3, norm=False, bias=True, dtype=torch.float64)
    b.load_state_dict({"conv.weight": a.conv.weight[:, [1, 0]], "conv.bias": a.conv.bias})
    x = randn(shape, torch.float64, seed)
    torch.testing.assert_close(a.pool(x), z_pool(x, 1).flip(1), atol=0, rtol=0)
    torch.testing.assert_close(a(x), b(x), atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# gates: the paper's Table 7 rows
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gates", "kept", "absent"),
    [("channel", "channel_gate", "spatial_gate"), ("spatial", "spatial_gate", "channel_gate")],
)
def test_single_gate_is_that_gate_alone(gates: str, kept: str, absent: str) -> None:
    m = randomize_(CBAM(6, 2, 3, gates=gates, spatial_bias=True, dtype=torch.float64), 3).eval()
    alone: nn.Module = (
        ChannelGate(6, 2, dtype=torch.float64)
        if gates == "channel"
        else SpatialGate(3, bias=True, dtype=torch.float64)
    )
    alone.load_state_dict(getattr(m, kept).state_dict())
    assert getattr(m, absent) is None
    assert all(key.startswith(f"{kept}.") for key in m.state_dict())
    assert sum(isinstance(mod, (ChannelGate, SpatialGate)) for mod in m.modules()) == 1
    x = randn((2, 6, 4, 5), torch.float64, 1)
    torch.testing.assert_close(m(x), alone.eval()(x), atol=0, rtol=0)


def test_channel_only_ignores_the_spatial_options() -> None:
    a = randomize_(CBAM(8, 2, gates="channel", dtype=torch.float64))
    spatial: dict[str, Any] = {"spatial_bias": True, "spatial_norm": False, "pool_order": "avg_max"}
    b = CBAM(8, 2, 5, gates="channel", dtype=torch.float64, **spatial)
    b.load_state_dict(a.state_dict(), strict=True)
    x = randn((2, 8, 3, 4), torch.float64, 0)
    torch.testing.assert_close(b(x), a(x), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# The STADB authors' preset
# ---------------------------------------------------------------------------------------------------------


def authors_forward(
    x: Tensor, fc1: Tensor, b1: Tensor, fc2: Tensor, b2: Tensor, conv: Tensor, b: Tensor
) -> Tensor:
    """The CBAM lines of ``BFE.forward`` in the authors' ``models/networks.py``, with functional ops."""
    avg, mx = F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)
    avg = F.conv2d(F.relu(F.conv2d(avg, fc1, b1)), fc2, b2)
    mx = F.conv2d(F.relu(F.conv2d(mx, fc1, b1)), fc2, b2)
    x_out = x * torch.sigmoid(avg + mx)
    avg, mx = torch.mean(x_out, 1, True), torch.max(x_out, 1, True)[0]
    return x_out * torch.sigmoid(F.conv2d(torch.cat((avg, mx), 1), conv, b, stride=1, padding=1))


@FAST
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(4, 16), st.integers(1, 6), st.integers(1, 6)), seed=seeds
)
def test_preset_matches_the_authors_forward_in_both_modes(shape: Shape, seed: int) -> None:
    c, hidden = shape[1], shape[1] // 4
    gen = torch.Generator().manual_seed(seed)
    weights = [
        torch.randn(s, generator=gen, dtype=torch.float64) * 0.5
        for s in ((hidden, c, 1, 1), (hidden,), (c, hidden, 1, 1), (c,), (1, 2, 3, 3), (1,))
    ]
    m = CBAM.stadb_reference(c, dtype=torch.float64)
    m.load_state_dict(
        {
            "channel_gate.fc1.weight": weights[0][:, :, 0, 0],
            "channel_gate.fc1.bias": weights[1],
            "channel_gate.fc2.weight": weights[2][:, :, 0, 0],
            "channel_gate.fc2.bias": weights[3],
            "spatial_gate.conv.weight": weights[4],
            "spatial_gate.conv.bias": weights[5],
        },
        strict=True,
    )
    x = randn(shape, torch.float64, seed)
    expected = authors_forward(x, *weights)
    torch.testing.assert_close(m.train()(x), expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(m.eval()(x), expected, atol=1e-12, rtol=1e-12)  # no norm: no mode


def test_preset_values_and_overrides() -> None:
    m = CBAM.stadb_reference(32)
    assert type(m) is CBAM
    assert {key: getattr(m, key) for key in AUTHORS} == AUTHORS and m.gates == "channel_spatial"
    assert m.channel_gate is not None and m.channel_gate.hidden_channels == 8
    assert m.spatial_gate is not None and m.spatial_gate.conv.bias is not None
    assert isinstance(m.spatial_gate.bn, nn.Identity) and m.spatial_gate.conv.kernel_size == (3, 3)
    assert m.extra_repr() == (
        "channels=32, reduction=4, kernel_size=3, spatial_bias=True, spatial_norm=False, pool_order='avg_max'"
    )
    overridden = CBAM.stadb_reference(32, reduction=16, gates="spatial", dtype=torch.float64)
    assert overridden.reduction == 16 and overridden.channel_gate is None
    assert overridden.spatial_gate is not None and overridden.spatial_gate.conv.weight.dtype == torch.float64


@pytest.mark.parametrize("name", ["cbam_reference", "CBAM_Reference"])
def test_create_attention_builds_the_preset(name: str) -> None:
    m = create_attention(name, 16, kernel_size=5)
    assert isinstance(m, CBAM)
    assert (m.reduction, m.kernel_size, m.spatial_bias, m.spatial_norm, m.pool_order) == (
        4,
        5,
        True,
        False,
        "avg_max",
    )


# ---------------------------------------------------------------------------------------------------------
# Defaults unchanged, repr and bad arguments
# ---------------------------------------------------------------------------------------------------------


def test_defaults_are_the_official_cbam() -> None:
    m = CBAM(32, 8, 5)
    assert m.extra_repr() == "channels=32, reduction=8, kernel_size=5"
    assert m.spatial_gate is not None and m.spatial_gate.conv.bias is None
    assert isinstance(m.spatial_gate.bn, nn.BatchNorm2d) and m.spatial_gate.pool_order == "max_mean"
    assert SpatialGate().extra_repr() == "kernel_size=7"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"gates": "channel"}, "channels=8, reduction=2, gates='channel'"),
        (
            {"gates": "spatial", "spatial_norm": False},
            "channels=8, kernel_size=3, spatial_norm=False, gates='spatial'",
        ),
        ({"spatial_bias": True}, "channels=8, reduction=2, kernel_size=3, spatial_bias=True"),
    ],
)
def test_extra_repr_shows_the_non_default_options(kwargs: dict[str, Any], expected: str) -> None:
    assert CBAM(8, 2, 3, **kwargs).extra_repr() == expected


BAD_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"spatial_bias": "true"}, "spatial_bias must be a bool, got 'true'"),
    ({"spatial_bias": 1}, "spatial_bias must be a bool, got 1"),
    ({"spatial_norm": None}, "spatial_norm must be a bool, got None"),
    ({"pool_order": "mean_max"}, r"pool_order must be one of \['max_mean', 'avg_max'\], got 'mean_max'"),
    ({"gates": "both"}, r"gates must be one of \['channel_spatial', 'channel', 'spatial'\], got 'both'"),
    ({"gates": None}, "gates must be one of .*, got None"),
    ({"reduction": 0}, "reduction must be a positive integer, got 0"),
    ({"kernel_size": 4}, "kernel_size must be odd"),
]


@pytest.mark.parametrize(("kwargs", "match"), BAD_ARGUMENTS)
def test_bad_arguments_name_the_argument_in_one_line(kwargs: dict[str, Any], match: str) -> None:
    for gates in ("channel_spatial", "channel", "spatial"):
        with pytest.raises(ValueError, match=match) as raised:
            CBAM(8, **{"gates": gates, **kwargs})
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bias": "yes"}, "bias must be a bool, got 'yes'"),
        ({"norm": 0}, "norm must be a bool, got 0"),
        ({"pool_order": "max_avg"}, r"pool_order must be one of \['max_mean', 'avg_max'\], got 'max_avg'"),
    ],
)
def test_spatial_gate_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpatialGate(3, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# The generic battery on the preset and on the single gates
# ---------------------------------------------------------------------------------------------------------


class TestCBAMReference(BaseLayerTests):
    layer_class = CBAM
    config: ClassVar[dict[str, Any]] = {"channels": 4}
    gradcheck_configs = ({}, {"gates": "channel"}, {"gates": "spatial", "spatial_norm": True})
    bad_arguments = tuple(BAD_ARGUMENTS)
    tolerance: ClassVar[dict[str, Any]] = {"atol": 1e-12, "rtol": 1e-12}

    def build(self, **overrides: Any) -> nn.Module:
        return randomize_(CBAM.stadb_reference(**{**self.config, **overrides}))

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
        return (randn((2, 4, 3, 3), dtype, 2),)

    def bad_inputs(self) -> list[BadInput]:
        return feature_map_bad_inputs(4, "CBAM")


@pytest.mark.parametrize("gates", ["channel_spatial", "channel", "spatial"])
def test_jit_script_matches_eager(gates: str) -> None:
    # A gate that is not built is a None attribute; TorchScript must drop its branch.
    m = randomize_(CBAM.stadb_reference(4, gates=gates)).eval()
    x = randn((2, 4, 3, 3), torch.float32, 0)
    torch.testing.assert_close(torch.jit.script(m)(x), m(x))
