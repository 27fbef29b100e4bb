"""Tests of the attention modules (CBAM, SE, SRM, triplet attention) and their factory."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from stadb_layers.cbam import CBAM, ChannelGate
from stadb_layers.create_attention import create_attention
from stadb_layers.mlp import ChannelMLP
from stadb_layers.se import SE
from stadb_layers.spatial_gate import SpatialGate, z_pool
from stadb_layers.srm import SRM
from stadb_layers.triplet_attention import TripletAttention

from .layer_testing import BadInput, BaseLayerTests, feature_map_bad_inputs

LAYERS: dict[str, type[nn.Module]] = {"cbam": CBAM, "se": SE, "srm": SRM, "triplet": TripletAttention}
NAMES = sorted(LAYERS)
DTYPES = [torch.float32, torch.float64]
# Module construction and forward are tiny; deadline=None because the first call of a test pays for lazy
# initialisation inside torch.
FAST = settings(deadline=None, max_examples=30)

Shape = tuple[int, int, int, int]
M = TypeVar("M", bound=nn.Module)
shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 9), st.integers(1, 9))
seeds = st.integers(0, 2**31 - 1)


@st.composite
def layer_kwargs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """Constructor keyword arguments other than ``channels`` for the layer ``name``."""
    kwargs: dict[str, Any] = {}
    if name in ("cbam", "se"):
        kwargs["reduction"] = draw(st.integers(1, 8))
    if name in ("cbam", "triplet"):
        kwargs["kernel_size"] = draw(st.sampled_from([1, 3, 5, 7]))
    if name == "srm":
        kwargs["eps"] = draw(st.sampled_from([1e-5, 1e-3, 0.5]))
    return kwargs


@st.composite
def configs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(NAMES))
    return name, draw(layer_kwargs(name))


def batch_norms(module: nn.Module) -> list[nn.BatchNorm1d | nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def randomize_(module: M, seed: int = 0, scale: float = 0.5) -> M:
    """Give every parameter and batch-norm running statistic random values (SRM's CFC starts at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)
        for bn in batch_norms(module):
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.copy_(
                torch.randn(bn.running_mean.shape, generator=gen, dtype=torch.float64) * scale
            )
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen, dtype=torch.float64) + 0.5)
    return module


def build(
    name: str,
    channels: int,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    scale: float = 0.5,
    **kwargs: Any,
) -> nn.Module:
    return randomize_(LAYERS[name](channels, dtype=dtype, **kwargs), seed, scale)


def randn(shape: Shape, dtype: torch.dtype, seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------------------------------------------------
# Independent reference formulas (functional, using the module's weights)
# ---------------------------------------------------------------------------------------------------------


def bn_ref(z: Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d, training: bool) -> Tensor:
    """Batch norm over dim 1 of ``z``: batch statistics (biased variance) in training, running in eval."""
    view = (1, z.shape[1]) + (1,) * (z.dim() - 2)
    if training:
        dims = [0, *range(2, z.dim())]
        mean = z.mean(dim=dims, keepdim=True)
        var = ((z - mean) ** 2).mean(dim=dims, keepdim=True)
    else:
        assert bn.running_mean is not None and bn.running_var is not None
        mean, var = bn.running_mean.view(view), bn.running_var.view(view)
    return (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(view) + bn.bias.view(view)


def mlp_ref(v: Tensor, fc1: nn.Linear, fc2: nn.Linear, act: Callable[[Tensor], Tensor]) -> Tensor:
    return F.linear(act(F.linear(v, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)


def conv_bn_gate_ref(
    pooled: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, training: bool, gate: Callable[[Tensor], Tensor]
) -> Tensor:
    k = conv.weight.shape[-1]
    return gate(bn_ref(F.conv2d(pooled, conv.weight, padding=(k - 1) // 2), bn, training))


def zpool_ref(t: Tensor) -> Tensor:
    """Official ``ChannelPool`` / ``ZPool``: max then mean over dim 1."""
    return torch.cat((torch.max(t, 1)[0].unsqueeze(1), torch.mean(t, 1).unsqueeze(1)), dim=1)


def cbam_ref(
    m: Any,
    x: Tensor,
    training: bool,
    act: Callable[[Tensor], Tensor] = F.relu,
    gate: Callable[[Tensor], Tensor] = torch.sigmoid,
) -> Tensor:
    cg, sg = m.channel_gate, m.spatial_gate
    avg = F.adaptive_avg_pool2d(x, 1).flatten(1)
    mx = F.adaptive_max_pool2d(x, 1).flatten(1)
    channel = gate(mlp_ref(avg, cg.fc1, cg.fc2, act) + mlp_ref(mx, cg.fc1, cg.fc2, act))
    x1 = x * channel[:, :, None, None]
    return x1 * conv_bn_gate_ref(zpool_ref(x1), sg.conv, sg.bn, training, gate)


def se_ref(
    m: Any,
    x: Tensor,
    training: bool,
    act: Callable[[Tensor], Tensor] = F.relu,
    gate: Callable[[Tensor], Tensor] = torch.sigmoid,
) -> Tensor:
    squeezed = x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])
    return x * gate(mlp_ref(squeezed, m.fc1, m.fc2, act))[:, :, None, None]


def srm_ref(
    m: Any,
    x: Tensor,
    training: bool,
    act: Callable[[Tensor], Tensor] = F.relu,
    gate: Callable[[Tensor], Tensor] = torch.sigmoid,
) -> Tensor:
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    mean = flat.mean(-1)
    std = torch.sqrt(((flat - mean[..., None]) ** 2).mean(-1) + m.eps)
    z = mean * m.cfc[:, 0] + std * m.cfc[:, 1]
    return x * gate(bn_ref(z, m.bn, training))[:, :, None, None]


def triplet_ref(
    m: Any,
    x: Tensor,
    training: bool,
    act: Callable[[Tensor], Tensor] = F.relu,
    gate: Callable[[Tensor], Tensor] = torch.sigmoid,
) -> Tensor:
    """The official permute-based formulation of triplet attention."""

    def attention_gate(t: Tensor, branch: Any) -> Tensor:
        return t * conv_bn_gate_ref(zpool_ref(t), branch.conv, branch.bn, training, gate)

    x_perm1 = x.permute(0, 2, 1, 3).contiguous()
    x_out11 = attention_gate(x_perm1, m.cw).permute(0, 2, 1, 3).contiguous()
    x_perm2 = x.permute(0, 3, 2, 1).contiguous()
    x_out21 = attention_gate(x_perm2, m.hc).permute(0, 3, 2, 1).contiguous()
    x_out = attention_gate(x, m.hw)
    return 1 / 3 * (x_out + x_out11 + x_out21)


REFERENCES: dict[str, Callable[..., Tensor]] = {
    "cbam": cbam_ref,
    "se": se_ref,
    "srm": srm_ref,
    "triplet": triplet_ref,
}


def assert_in_unit_interval(g: Tensor) -> None:
    """Gates lie in (0, 1); a float32 sigmoid saturates to exactly 0 or 1 for logits beyond ~17, so there
    the interval is closed (rounding is monotone, so it cannot overshoot)."""
    if g.dtype == torch.float64:
        assert ((g > 0) & (g < 1)).all()
    else:
        assert ((g >= 0) & (g <= 1)).all()


# ---------------------------------------------------------------------------------------------------------
# The generic battery (tests/layer_testing.py), plus what every attention module shares
# ---------------------------------------------------------------------------------------------------------


class AttentionLayerTests(BaseLayerTests):
    """:class:`BaseLayerTests` for an attention module, with randomised weights and statistics."""

    name: ClassVar[str]  # key in LAYERS and REFERENCES
    gate_count: ClassVar[int]  # gate_layer instances the module holds
    channels: ClassVar[int] = 4
    tolerance: ClassVar[dict[str, Any]] = {"atol": 1e-12, "rtol": 1e-12}
    gradcheck_kwargs: ClassVar[dict[str, Any]] = {}

    def build(self, **overrides: Any) -> nn.Module:
        return randomize_(super().build(**overrides))

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
        return (randn((2, self.channels, 3, 3), dtype, 2),)

    def bad_inputs(self) -> list[BadInput]:
        return feature_map_bad_inputs(self.channels, self.layer_class.__name__)

    def test_bf16_cpu_autocast_is_close_to_fp32(self) -> None:
        m = build(self.name, 16, dtype=torch.float32, seed=4).eval()
        x = torch.randn(2, 16, 7, 7)
        expected = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.05)

    def test_device_and_dtype_reach_all_parameters_and_buffers(self) -> None:
        m = self.layer_class(8, device="meta", dtype=torch.float64)
        tensors = list(m.parameters()) + list(m.buffers())
        assert tensors
        assert all(t.device.type == "meta" for t in tensors)
        assert all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())

    def test_custom_gate_and_act_layers(self) -> None:
        kwargs: dict[str, Any] = {"gate_layer": nn.Hardsigmoid}
        if self.name in ("cbam", "se"):
            kwargs["act_layer"] = nn.GELU
        m = build(self.name, 12, scale=2.0, **kwargs).eval()
        assert sum(isinstance(mod, nn.Hardsigmoid) for mod in m.modules()) == self.gate_count
        assert not any(isinstance(mod, nn.Sigmoid) for mod in m.modules())
        if "act_layer" in kwargs:
            assert any(isinstance(mod, nn.GELU) for mod in m.modules())
            assert not any(isinstance(mod, nn.ReLU) for mod in m.modules())
        x = torch.randn(2, 12, 5, 6, dtype=torch.float64) * 3
        expected = REFERENCES[self.name](m, x, False, act=F.gelu, gate=F.hardsigmoid)
        torch.testing.assert_close(m(x), expected, atol=1e-12, rtol=1e-12)


class TestCBAM(AttentionLayerTests):
    layer_class = CBAM
    name = "cbam"
    gate_count = 2
    config: ClassVar[dict[str, Any]] = {"channels": 4, "reduction": 2, "kernel_size": 3}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"channels": 0}, "channels must be a positive integer, got 0"),
        ({"channels": 16.0}, "channels must be a positive integer, got 16.0"),
        ({"reduction": 0}, "reduction must be a positive integer"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"kernel_size": 0}, "kernel_size must be a positive integer"),
    ]


class TestSE(AttentionLayerTests):
    layer_class = SE
    name = "se"
    gate_count = 1
    config: ClassVar[dict[str, Any]] = {"channels": 4, "reduction": 2}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"channels": 0}, "channels must be a positive integer"),
        ({"channels": -3}, "channels must be a positive integer"),
        ({"channels": True}, "channels must be a positive integer, got True"),
        ({"reduction": 0}, "reduction must be a positive integer"),
    ]


class TestSRM(AttentionLayerTests):
    layer_class = SRM
    name = "srm"
    gate_count = 1
    config: ClassVar[dict[str, Any]] = {"channels": 4}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"channels": 0}, "channels must be a positive integer"),
        ({"eps": 0.0}, r"eps must lie in \(0.0, inf\)"),
        ({"eps": -1e-5}, "eps must lie in"),
        ({"eps": math.nan}, "eps must lie in"),
    ]


class TestTripletAttention(AttentionLayerTests):
    layer_class = TripletAttention
    name = "triplet"
    gate_count = 3
    config: ClassVar[dict[str, Any]] = {"channels": 4, "kernel_size": 3}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"channels": 0}, "channels must be a positive integer"),
        ({"kernel_size": 2}, "kernel_size must be odd"),
        ({"kernel_size": 0}, "kernel_size must be a positive integer"),
    ]


class TestChannelMLP(BaseLayerTests):
    layer_class = ChannelMLP
    config: ClassVar[dict[str, Any]] = {"channels": 6, "reduction": 2}
    tolerance: ClassVar[dict[str, Any]] = {"atol": 1e-12, "rtol": 1e-12}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"channels": 0}, "channels must be a positive integer"),
        ({"reduction": -1}, "reduction must be a positive integer"),
    ]

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
        return (torch.randn(3, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype),)


def test_se_and_cbam_share_the_channel_mlp_and_keep_their_state_dict_keys() -> None:
    # Trainer checkpoints and the timm parity tests below rely on these keys.
    se, cbam = SE(8, 2), CBAM(8, 2)
    assert isinstance(se, ChannelMLP) and isinstance(cbam.channel_gate, ChannelMLP)
    assert list(se.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert list(cbam.state_dict()) == [
        *(f"channel_gate.{key}" for key in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")),
        "spatial_gate.conv.weight",
        *(f"spatial_gate.bn.{key}" for key in ("weight", "bias", "running_mean", "running_var")),
        "spatial_gate.bn.num_batches_tracked",
    ]
    v = torch.randn(3, 8, dtype=torch.float64)
    se.double()
    torch.testing.assert_close(se.mlp(v), mlp_ref(v, se.fc1, se.fc2, F.relu), atol=1e-12, rtol=1e-12)


def test_triplet_attention_rotations_add_no_state() -> None:
    keys = list(TripletAttention(4).state_dict())
    assert len(keys) == 18 and all(key.split(".")[0] in ("cw", "hc", "hw") for key in keys)


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------


@FAST
@given(config=configs(), shape=shapes, dtype=st.sampled_from(DTYPES), seed=seeds)
def test_output_is_input_times_gate_in_unit_interval(
    config: tuple[str, dict[str, Any]], shape: Shape, dtype: torch.dtype, seed: int
) -> None:
    # Every module returns x * g with a sigmoid gate (for CBAM a product of two, for triplet attention an
    # average of three), so out / x lies in (0, 1) wherever x is not tiny.
    name, kwargs = config
    m = build(name, shape[1], dtype, seed, **kwargs).eval()
    x = randn(shape, dtype, seed)
    assert_in_unit_interval((m(x) / x)[x.abs() > 1e-3])


@FAST
@given(config=configs(), shape=shapes, dtype=st.sampled_from(DTYPES), seed=seeds)
def test_ones_input_gives_gate_in_unit_interval(
    config: tuple[str, dict[str, Any]], shape: Shape, dtype: torch.dtype, seed: int
) -> None:
    name, kwargs = config
    m = build(name, shape[1], dtype, seed, **kwargs).eval()
    # With x = 1 the output is the gate itself (gates multiply).
    assert_in_unit_interval(m(torch.ones(shape, dtype=dtype)))


@FAST
@given(
    name=st.sampled_from(["se", "srm"]),
    shape=shapes,
    dtype=st.sampled_from(DTYPES),
    seed=seeds,
)
def test_channel_gate_is_constant_over_space(name: str, shape: Shape, dtype: torch.dtype, seed: int) -> None:
    m = build(name, shape[1], dtype, seed).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype) + 0.1
    ratio = m(x) / x
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=tol, rtol=tol)


@FAST
@given(
    channels=st.integers(1, 40),
    batch=st.integers(1, 3),
    eps=st.sampled_from([1e-8, 1e-5, 1e-2]),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 1e3]),
    dtype=st.sampled_from(DTYPES),
    seed=seeds,
)
def test_srm_is_finite_at_1x1_and_batch_1(
    channels: int, batch: int, eps: float, scale: float, dtype: torch.dtype, seed: int
) -> None:
    m = build("srm", channels, dtype, seed, eps=eps).eval()
    for shape in [(batch, channels, 1, 1), (1, channels, 5, 4), (1, channels, 1, 1)]:
        x = randn(shape, dtype, seed) * scale
        x.requires_grad_(True)
        out = m(x)
        out.sum().backward()
        assert x.grad is not None
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_srm_official_unbiased_std_would_be_nan_at_1x1() -> None:
    # Motivation for the documented deviation: the official unbiased std is NaN for a single position.
    x = torch.randn(2, 3, 1, 1)
    with pytest.warns(UserWarning, match="degrees of freedom"):
        assert torch.isnan(x.view(2, 3, -1).std(dim=2)).all()
    assert torch.isfinite(SRM(3).eval()(x)).all()


@pytest.mark.parametrize("scale", [1e20, 1e30])
@pytest.mark.parametrize("shape", [(3, 6, 5, 4), (3, 6, 1, 1)])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("official_init", [True, False])
def test_srm_is_finite_at_large_magnitude(
    scale: float, shape: Shape, train: bool, official_init: bool
) -> None:
    # The plain float32 variance overflows from about 1e19 (at 1e20 the zero CFC gave 0 * inf = NaN).
    m = (SRM(6) if official_init else build("srm", 6, torch.float32, scale=1.0)).train(train)
    x = (randn(shape, torch.float32, 0) * scale).requires_grad_(True)
    out = m(x)
    assert torch.isfinite(out).all()
    if not train:  # in train mode the batch norm's own variance of z ~ scale overflows in backward
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


@FAST
@given(
    shape=shapes,
    exponent=st.integers(-120, 120),
    constant=st.booleans(),
    eps=st.sampled_from([1e-8, 1e-5, 0.5]),
    seed=seeds,
)
# A constant channel at a scale where eps / s**2 is subnormal: sigma was sqrt(eps) off by 4e-5.
@example(shape=(1, 1, 1, 1), exponent=55, constant=False, eps=1e-8, seed=0)
def test_srm_style_statistics_match_float64_at_any_magnitude(
    shape: Shape, exponent: int, constant: bool, eps: float, seed: int
) -> None:
    # float32 input of any magnitude 2**exponent, against the plain formula evaluated in float64.
    from stadb_layers.srm import _style_statistics  # a private helper

    x = randn(shape, torch.float32, seed) * 2.0**exponent
    if constant:  # a constant channel (as a 1 x 1 map): sigma is sqrt(eps) and its gradient 0
        x = x[:, :, :1, :1].expand(shape).contiguous()
    x.requires_grad_(True)
    mean, std = _style_statistics(x, eps)
    flat = x.detach().double().flatten(2)
    var64, mean64 = torch.var_mean(flat, dim=2, correction=0)
    std64 = torch.sqrt(var64 + eps)
    assert mean.dtype == std.dtype == torch.float32
    torch.testing.assert_close(mean, mean64.float(), rtol=1e-5, atol=1e-6 * 2.0**exponent)
    torch.testing.assert_close(std, std64.float(), rtol=1e-5, atol=0)
    (mean.sum() + std.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_srm_backward_keeps_no_scaled_copy(dtype: torch.dtype) -> None:
    # The statistics of the scaled copy have a hand-written backward: autograd keeps x (alive anyway for
    # the gating product) and (N, C)-sized tensors, not the copy (float32, twice x for 16-bit input).
    m = SRM(64).train()
    x = randn((4, 64, 12, 8), dtype, 0).requires_grad_(True)
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = m(x)
    saved.pop(x.untyped_storage().data_ptr())
    assert max(saved.values()) < x.numel() * x.element_size() / 8  # (N, C) statistics and gates only
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("train", [False, True])
def test_srm_gradients_match_autograd_of_the_formula(train: bool) -> None:
    # First and second order: the hand-written backward against autograd of the reference formula.
    m = build("srm", 3, seed=7).train(train)
    x = randn((2, 3, 4, 3), torch.float64, 7).requires_grad_(True)
    grad = randn((2, 3, 4, 3), torch.float64, 8)
    (ours,) = torch.autograd.grad(m(x), x, grad)
    (expected,) = torch.autograd.grad(srm_ref(m, x, train), x, grad)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(m, (x,))


@pytest.mark.parametrize(
    ("module_dtype", "input_dtype"),
    # Every dtype with itself, and the mixed pairs that batch norm accepts (16-bit input, float32 module).
    [(dtype, dtype) for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)]
    + [(torch.float32, torch.bfloat16), (torch.float32, torch.float16)],
)
@pytest.mark.parametrize("train", [False, True])
def test_srm_output_has_the_input_dtype(
    module_dtype: torch.dtype, input_dtype: torch.dtype, train: bool
) -> None:
    m = build("srm", 8, module_dtype, seed=5).train(train)
    x = randn((3, 8, 4, 5), input_dtype, 5)
    out = m(x)
    assert out.dtype == input_dtype
    assert torch.isfinite(out).all()


def test_srm_zero_initialised_cfc_gives_half_gate() -> None:
    m = SRM(8, dtype=torch.float64)
    assert torch.equal(m.cfc, torch.zeros(8, 2, dtype=torch.float64))
    x = torch.randn(3, 8, 4, 5, dtype=torch.float64)
    # z = 0 and the fresh batch norm maps it to its bias 0 (train: zero batch variance; eval: unit running
    # variance), so the gate is sigmoid(0) = 1/2 everywhere.
    torch.testing.assert_close(m.eval()(x), x / 2, atol=0, rtol=0)
    torch.testing.assert_close(m.train()(x), x / 2, atol=0, rtol=0)


def test_srm_state_dict_matches_official_layout() -> None:
    # The official SRMLayer has `cfc = Parameter(C, 2)` and `bn = BatchNorm2d(C)`.
    class OfficialSRMLayer(nn.Module):
        def __init__(self, channel: int) -> None:
            super().__init__()
            self.cfc = nn.Parameter(torch.zeros(channel, 2))
            self.bn = nn.BatchNorm2d(channel)

    ours = randomize_(SRM(6))
    official = OfficialSRMLayer(6)
    official.load_state_dict(ours.state_dict(), strict=True)
    SRM(6).load_state_dict(official.state_dict(), strict=True)
    assert torch.equal(official.cfc, ours.cfc)


# ---------------------------------------------------------------------------------------------------------
# Exact comparison with the reference formulas
# ---------------------------------------------------------------------------------------------------------


@FAST
@given(config=configs(), shape=shapes, train=st.booleans(), seed=seeds)
def test_matches_reference_formula(
    config: tuple[str, dict[str, Any]], shape: Shape, train: bool, seed: int
) -> None:
    name, kwargs = config
    training = train and shape[0] > 1
    m = build(name, shape[1], torch.float64, seed, **kwargs).train(training)
    x = randn(shape, torch.float64, seed)
    expected = REFERENCES[name](m, x, training)
    torch.testing.assert_close(m(x), expected, atol=1e-12, rtol=1e-12)


def test_extra_repr() -> None:
    assert "channels=32, reduction=8, kernel_size=5" in repr(CBAM(32, 8, 5))
    assert "hidden_channels=4" in repr(CBAM(32, 8, 5))
    assert "channels=32, reduction=8, hidden_channels=4" in repr(SE(32, 8))
    assert "channels=32, eps=0.001" in repr(SRM(32, eps=1e-3))
    assert "kernel_size=3" in repr(TripletAttention(32, 3))


def test_hidden_width_is_at_least_one() -> None:
    gate = CBAM(3, reduction=16).channel_gate
    assert gate is not None and gate.hidden_channels == 1
    assert SE(3, reduction=16).hidden_channels == 1
    assert SE(64, reduction=16).hidden_channels == 4


# ---------------------------------------------------------------------------------------------------------
# Differential tests against timm
# ---------------------------------------------------------------------------------------------------------


def _timm_state_from_cbam(m: CBAM) -> dict[str, Tensor]:
    cg, sg = m.channel_gate, m.spatial_gate
    assert cg is not None and sg is not None
    return {
        "channel.fc1.weight": cg.fc1.weight[:, :, None, None],
        "channel.fc1.bias": cg.fc1.bias,
        "channel.fc2.weight": cg.fc2.weight[:, :, None, None],
        "channel.fc2.bias": cg.fc2.bias,
        # timm pools [mean, max]; the official code and this library pool [max, mean].
        "spatial.conv.conv.weight": sg.conv.weight[:, [1, 0]],
        **{f"spatial.conv.bn.{k}": v for k, v in sg.bn.state_dict().items()},
    }


@settings(deadline=None, max_examples=15)
@given(
    shape=shapes,
    reduction=st.integers(1, 8),
    kernel_size=st.sampled_from([1, 3, 7]),
    train=st.booleans(),
    seed=seeds,
)
def test_cbam_matches_timm(shape: Shape, reduction: int, kernel_size: int, train: bool, seed: int) -> None:
    pytest.importorskip("timm")
    from timm.layers.cbam import CbamModule

    training = train and shape[0] > 1
    ours = build("cbam", shape[1], seed=seed, reduction=reduction, kernel_size=kernel_size)
    assert isinstance(ours, CBAM) and ours.channel_gate is not None
    theirs = CbamModule(
        shape[1],
        rd_channels=ours.channel_gate.hidden_channels,
        spatial_kernel_size=kernel_size,
        mlp_bias=True,
        dtype=torch.float64,
    )
    theirs.load_state_dict(_timm_state_from_cbam(ours), strict=True)
    ours.train(training)
    theirs.train(training)
    x = randn(shape, torch.float64, seed)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=1e-12)


@settings(deadline=None, max_examples=15)
@given(shape=shapes, reduction=st.integers(1, 8), seed=seeds)
def test_se_matches_timm(shape: Shape, reduction: int, seed: int) -> None:
    pytest.importorskip("timm")
    from timm.layers.squeeze_excite import SEModule

    ours = build("se", shape[1], seed=seed, reduction=reduction)
    assert isinstance(ours, SE)
    theirs = SEModule(shape[1], rd_channels=ours.hidden_channels, bias=True, dtype=torch.float64)
    theirs.load_state_dict(
        {
            "fc1.weight": ours.fc1.weight[:, :, None, None],
            "fc1.bias": ours.fc1.bias,
            "fc2.weight": ours.fc2.weight[:, :, None, None],
            "fc2.bias": ours.fc2.bias,
        },
        strict=True,
    )
    x = randn(shape, torch.float64, seed)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# timm attn_layer integration
# ---------------------------------------------------------------------------------------------------------


def test_cbam_as_timm_resnet50_attn_layer() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet50", pretrained=False, block_args=dict(attn_layer=CBAM)).eval()
    assert sum(isinstance(m, CBAM) for m in model.modules()) == 16  # one per bottleneck (3 + 4 + 6 + 3)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_timm_resnet18_attn_layer(name: str) -> None:
    timm = pytest.importorskip("timm")
    cls = LAYERS[name]
    model = timm.create_model(
        "resnet18", pretrained=False, num_classes=5, block_args=dict(attn_layer=cls), dtype=torch.float64
    )
    attn = [m for m in model.modules() if isinstance(m, cls)]
    assert len(attn) == 8  # one per basic block (2 + 2 + 2 + 2)
    # timm forwards dtype to attn_layer(channels, device=..., dtype=...).
    assert all(p.dtype == torch.float64 for m in attn for p in m.parameters())
    model.train()
    out = model(torch.randn(2, 3, 32, 32, dtype=torch.float64))  # 1x1 maps in the last stage
    out.sum().backward()
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------------
# Argument and input validation
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "x", "match"),
    [
        (
            ChannelGate(4),
            torch.randn(1, 5, 3, 3),
            "ChannelGate was built for channels=4, got x with 5 channels",
        ),
        (ChannelGate(4), torch.randn(1, 4, 3, 0), "x must have a non-empty spatial size"),
        (SpatialGate(3), torch.randn(1, 4, 0, 3), "x must have a non-empty spatial size"),
    ],
)
def test_gates_name_bad_input(module: nn.Module, x: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        module(x)


def test_triplet_attention_checks_channels_only_when_given() -> None:
    x = torch.randn(2, 6, 5, 4)
    a = randomize_(TripletAttention()).eval()
    b = TripletAttention(6).eval()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)
    assert a(torch.randn(1, 9, 3, 3)).shape == (1, 9, 3, 3)  # channels=None accepts any count
    assert "channels=6, kernel_size=7" in repr(b) and "channels" not in repr(a)


@FAST
@given(shape=shapes, dim=st.integers(1, 3), seed=seeds)
def test_z_pool_matches_official_zpool(shape: Shape, dim: int, seed: int) -> None:
    x = randn(shape, torch.float64, seed)
    torch.testing.assert_close(z_pool(x, dim), zpool_ref(x.movedim(dim, 1)), atol=1e-12, rtol=1e-12)


@FAST
@given(shape=shapes, kernel_size=st.sampled_from([1, 3, 5]), train=st.booleans(), seed=seeds)
def test_triplet_branches_are_spatial_gates_on_permuted_input(
    shape: Shape, kernel_size: int, train: bool, seed: int
) -> None:
    # The official formulation: each branch is a full SpatialGate forward on a permuted copy of x.
    m = randomize_(TripletAttention(kernel_size=kernel_size, dtype=torch.float64), seed)
    m.train(train and shape[0] > 1)
    x = randn(shape, torch.float64, seed)
    branch_cw = m.cw(x.transpose(1, 2).contiguous()).transpose(1, 2)
    branch_hc = m.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
    expected = (branch_cw + branch_hc + m.hw(x)) / 3
    assert all(isinstance(branch, SpatialGate) for branch in (m.cw, m.hc, m.hw))
    torch.testing.assert_close(m(x), expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(
    ("pooled", "match"),
    [
        (torch.randn(2, 3, 5, 5), "pooled must have 2 channels"),
        (torch.randn(2, 5, 5), r"pooled must be a 4-D \(N, C, H, W\) tensor"),
        (torch.ones(2, 2, 5, 5, dtype=torch.int64), "pooled must be a floating tensor"),
    ],
)
def test_spatial_gate_attention_from_pooled_names_bad_input(pooled: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SpatialGate(kernel_size=3).eval().attention_from_pooled(pooled)


# ---------------------------------------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("cbam", CBAM),
        ("CBAM", CBAM),
        ("cbam_reference", CBAM),
        ("se", SE),
        ("Se", SE),
        ("srm", SRM),
        ("SRM", SRM),
        ("triplet", TripletAttention),
        ("Triplet", TripletAttention),
    ],
)
def test_create_attention_returns_class(name: str, cls: type[nn.Module]) -> None:
    m = create_attention(name, 16)
    assert type(m) is cls


def test_create_attention_forwards_kwargs() -> None:
    cbam = create_attention("cbam", 32, reduction=4, kernel_size=3, act_layer=nn.SiLU, dtype=torch.float64)
    assert isinstance(cbam, CBAM) and cbam.channel_gate is not None and cbam.spatial_gate is not None
    assert cbam.channel_gate.hidden_channels == 8
    assert cbam.spatial_gate.conv.kernel_size == (3, 3)
    assert isinstance(cbam.channel_gate.act, nn.SiLU)
    assert cbam.channel_gate.fc1.weight.dtype == torch.float64

    se = create_attention("se", 32, reduction=8, gate_layer=nn.Hardsigmoid)
    assert isinstance(se, SE)
    assert se.hidden_channels == 4 and isinstance(se.gate, nn.Hardsigmoid)

    srm = create_attention("srm", 32, eps=1e-3)
    assert isinstance(srm, SRM)
    assert srm.eps == 1e-3 and srm.channels == 32

    triplet = create_attention("triplet", 32, kernel_size=5)
    assert isinstance(triplet, TripletAttention)
    assert triplet.cw.conv.kernel_size == (5, 5)

    with pytest.raises(TypeError):
        create_attention("triplet", 32, reduction=4)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("eca", {}, r"name must be one of \['cbam', 'cbam_reference', 'se', 'srm', 'triplet'\]"),
        ("", {}, "name must be one of"),
        ("se", {"reduction": 0}, "reduction must be a positive integer"),
    ],
)
def test_create_attention_bad_arguments(name: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_attention(name, 16, **kwargs)
