import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stadb_layers.kernels.threshold_mask import channel_mean_attention
from stadb_layers.threshold_drop import SelfThresholdDrop, self_threshold_drop

from .drop_layer_testing import DropLayerTests
from .layer_testing import BadInput, feature_map_bad_inputs

shapes = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 7), st.integers(1, 7))
alphas = st.floats(0.05, 1.0, exclude_min=False)
float_dtypes = st.sampled_from([np.float32, np.float64])


@st.composite
def feature_maps(draw: st.DrawFn, elements: st.SearchStrategy[float] | None = None) -> torch.Tensor:
    shape = draw(shapes)
    dtype = draw(float_dtypes)
    values = elements if elements is not None else st.floats(-4, 4, width=32)
    return torch.from_numpy(draw(arrays(dtype, shape, elements=values)))


def reference_keep_mask(x: torch.Tensor, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-position loops in float64 numpy: keep where mean_c x < alpha * max_hw mean_c x.

    Also returns which positions are clear of the threshold by more than rounding, where the
    reference and the library must agree exactly.
    """
    values = x.double().numpy()
    n, c, h, w = values.shape
    keep = np.zeros((n, 1, h, w), dtype=bool)
    clear = np.zeros((n, 1, h, w), dtype=bool)
    for i in range(n):
        attention = [[math.fsum(values[i, :, r, s]) / c for s in range(w)] for r in range(h)]
        threshold = alpha * max(max(row) for row in attention)
        for r in range(h):
            for s in range(w):
                keep[i, 0, r, s] = attention[r][s] < threshold
                clear[i, 0, r, s] = abs(attention[r][s] - threshold) > 1e-5 * (1 + abs(threshold))
    return keep, clear


@settings(deadline=None, max_examples=60)
@given(x=feature_maps(), alpha=alphas)
def test_matches_reference_formula(x: torch.Tensor, alpha: float) -> None:
    out, keep = self_threshold_drop(x, alpha=alpha)
    expected_keep, clear = reference_keep_mask(x, alpha)
    np.testing.assert_array_equal(keep.numpy()[clear], expected_keep[clear])
    assert keep.dtype == torch.bool and keep.shape == (x.shape[0], 1, *x.shape[2:])
    assert out.dtype == x.dtype
    torch.testing.assert_close(out, torch.where(keep, x, torch.zeros_like(x)), rtol=0, atol=0)


@settings(deadline=None, max_examples=40)
@given(x=feature_maps(), alpha=alphas)
def test_peak_is_dropped_when_positive(x: torch.Tensor, alpha: float) -> None:
    attention = x.mean(dim=1)
    assume(bool((attention.flatten(1).amax(dim=1) > 0).all()))
    _, keep = self_threshold_drop(x, alpha=alpha)
    peaks = attention.flatten(1).argmax(dim=1)
    assert not keep.flatten(1).gather(1, peaks[:, None]).any()


@st.composite
def signed_feature_maps(draw: st.DrawFn) -> torch.Tensor:
    """Feature maps whose samples each get a sign pattern and a magnitude, peak exactly 0 included."""
    x = draw(feature_maps(st.floats(0, 4, width=32)))
    samples = []
    for sample in x:
        kind = draw(st.sampled_from(["mixed", "positive", "negative", "zeros", "zero peak"]))
        magnitude = draw(st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]))
        if kind == "mixed":
            sample = (sample - 2) * magnitude
        elif kind == "positive":
            sample = sample * magnitude
        elif kind == "negative":
            sample = -(sample + 1) * magnitude
        elif kind == "zeros":
            sample = torch.zeros_like(sample)
        else:
            sample = -sample * magnitude
            sample[:, 0, 0] = 0.0
        samples.append(sample)
    return torch.stack(samples)


@settings(deadline=None, max_examples=80)
@given(x=signed_feature_maps(), alpha=alphas)
def test_alpha_rule_over_signs_and_magnitudes(x: torch.Tensor, alpha: float) -> None:
    # Positive peak: exactly the authors' rule (attention >= alpha * peak is dropped). Peak <= 0 (for
    # post-ReLU input an all-zero map): the sample is left unchanged. Eager and fused paths agree.
    out, keep = self_threshold_drop(x, alpha=alpha)
    attention = channel_mean_attention(x)
    peak = attention.amax(dim=(2, 3), keepdim=True)
    authors_keep = ~(attention >= alpha * peak)
    assert torch.equal(keep, torch.where(peak > 0, authors_keep, torch.ones_like(keep)))
    for sample in range(x.shape[0]):
        if not peak[sample] > 0:
            assert keep[sample].all() and torch.equal(out[sample], x[sample])
    layer = SelfThresholdDrop(alpha)
    assert torch.equal(layer(x), out)
    assert layer.last_keep_mask is not None and torch.equal(layer.last_keep_mask, keep)


@settings(deadline=None, max_examples=30)
@given(x=signed_feature_maps(), drop_ratio=st.floats(0.01, 0.99))
def test_drop_ratio_ranks_whatever_the_sign(x: torch.Tensor, drop_ratio: float) -> None:
    _, keep = self_threshold_drop(x, drop_ratio=drop_ratio)
    num_dropped = math.ceil(drop_ratio * x.shape[2] * x.shape[3])
    assert ((~keep).flatten(1).sum(dim=1) >= num_dropped).all()


@pytest.mark.parametrize("mode", [{"alpha": 0.8}, {"drop_ratio": 0.3}], ids=["alpha", "drop_ratio"])
@pytest.mark.parametrize("poison", ["nan", "inf_minus_inf"])
@pytest.mark.parametrize("use_module", [False, True], ids=["function", "module"])
def test_nan_sample_is_left_unchanged(mode: dict[str, float], poison: str, use_module: bool) -> None:
    # Not a zeroed sample that looks clean: the NaN reaches the output and the gradient.
    x = torch.rand(3, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    if poison == "nan":
        x[1, 2, 3, 4] = math.nan
    else:  # finite attention nowhere near: inf - inf in one column
        x[1, 0, 3, 4], x[1, 1, 3, 4] = math.inf, -math.inf
    x.requires_grad_(True)
    if use_module:
        layer = SelfThresholdDrop(mode.get("alpha"), drop_ratio=mode.get("drop_ratio"))
        out, keep = layer(x), layer.last_keep_mask
        assert keep is not None
    else:
        out, keep = self_threshold_drop(x, **mode)
    assert keep[1].all()
    torch.testing.assert_close(out[1], x[1], rtol=0, atol=0, equal_nan=True)
    expected, expected_keep = self_threshold_drop(x.detach()[[0, 2]], **mode)
    assert torch.equal(out[[0, 2]], expected) and torch.equal(keep[[0, 2]], expected_keep)
    grad = torch.randn_like(x)
    out.backward(grad)
    assert x.grad is not None and torch.equal(x.grad[1], grad[1])


def test_infinite_peak_is_dropped_and_reaches_the_output_as_nan() -> None:
    x = torch.rand(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    x[0, :, 1, 2] = math.inf
    out, keep = self_threshold_drop(x, alpha=0.8)
    assert (~keep[0]).nonzero().tolist() == [[0, 1, 2]]  # only the infinite peak is dropped
    assert out[0, :, 1, 2].isnan().all()  # inf * 0
    assert torch.equal(out[0][keep[0].expand(4, 3, 5)], x[0][keep[0].expand(4, 3, 5)])


def test_alpha_one_drops_the_peak_reference_rule() -> None:
    # The paper's prose ("greater than") keeps everything at alpha = 1; the reference code drops the peak.
    x = torch.tensor([[[[1.0, 3.0], [2.0, 3.0]]]])
    out, keep = self_threshold_drop(x, alpha=1.0)
    assert keep.tolist() == [[[[True, False], [True, False]]]]
    assert out.tolist() == [[[[1.0, 0.0], [2.0, 0.0]]]]


@settings(deadline=None, max_examples=40)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    drop_ratio=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
def test_drop_ratio_erases_ceil_fraction(
    n: int, c: int, hw: tuple[int, int], drop_ratio: float, seed: int
) -> None:
    h, w = hw
    # Distinct attention values: a random permutation per sample, replicated over channels.
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.stack([torch.randperm(h * w, generator=generator) for _ in range(n)]).double()
    x = ranks.view(n, 1, h, w).expand(n, c, h, w).contiguous()
    out, keep = self_threshold_drop(x, drop_ratio=drop_ratio)
    num_dropped = math.ceil(drop_ratio * h * w)
    assert ((~keep).flatten(1).sum(dim=1) == num_dropped).all()
    # The erased ones are the largest.
    assert (ranks[~keep.view(n, -1)] >= h * w - num_dropped).all()
    torch.testing.assert_close(out, x * keep)


@settings(deadline=None, max_examples=30)
@given(x=feature_maps(), alpha=alphas)
def test_backward_is_grad_times_mask(x: torch.Tensor, alpha: float) -> None:
    x.requires_grad_(True)
    out, keep = self_threshold_drop(x, alpha=alpha)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert x.grad is not None
    torch.testing.assert_close(x.grad, grad * keep, rtol=0, atol=0)


def test_last_maps_are_detached_and_small() -> None:
    layer = SelfThresholdDrop()
    x = torch.rand(2, 32, 6, 4, requires_grad=True)
    layer(x * 2).sum().backward()
    assert layer.last_attention is not None and layer.last_keep_mask is not None
    for saved in (layer.last_attention, layer.last_keep_mask):
        assert saved.shape == (2, 1, 6, 4)
        assert not saved.requires_grad and saved.grad_fn is None
    torch.testing.assert_close(layer.last_attention, (x * 2).mean(dim=1, keepdim=True).detach())


def test_inplace_writes_into_input() -> None:
    y = torch.nn.Conv2d(8, 8, 1)(torch.rand(2, 8, 5, 3))
    expected = SelfThresholdDrop(0.8)(y)
    result = SelfThresholdDrop(0.8, inplace=True)(y)
    assert result.data_ptr() == y.data_ptr()
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_inplace_backward_after_convolution() -> None:
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    x = torch.rand(2, 4, 5, 5)
    conv(x).pow(2).sum().backward()  # warm the module; gradients reset below
    grads = {}
    for inplace in (False, True):
        conv.zero_grad()
        SelfThresholdDrop(0.8, inplace=inplace)(conv(x)).pow(2).sum().backward()
        assert conv.weight.grad is not None
        grads[inplace] = conv.weight.grad.clone()
    torch.testing.assert_close(grads[True], grads[False])


def test_bf16_autocast_uses_float32_attention() -> None:
    layer = SelfThresholdDrop()
    x = torch.randn(2, 16, 6, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(torch.nn.functional.conv2d(x, torch.randn(16, 16, 1, 1)))
    assert y.dtype == torch.bfloat16
    assert layer.last_attention is not None and layer.last_attention.dtype == torch.float32


def test_extra_repr() -> None:
    assert repr(SelfThresholdDrop()) == "SelfThresholdDrop(alpha=0.8)"
    assert (
        repr(SelfThresholdDrop(drop_ratio=0.2, inplace=True))
        == "SelfThresholdDrop(drop_ratio=0.2, inplace=True)"
    )


def test_eval_mode_is_the_identity() -> None:
    x = torch.rand(2, 4, 3, 3)
    layer = SelfThresholdDrop().eval()
    assert layer(x) is x and layer.last_keep_mask is None


# --------------------------------------------------------------------------------------------------
# The generic battery (tests/layer_testing.py, tests/drop_layer_testing.py), one class per mode.


class TestSelfThresholdDrop(DropLayerTests):
    layer_class = SelfThresholdDrop
    config: ClassVar[dict[str, Any]] = {"alpha": 0.8}
    has_functional = True
    # Away from the threshold the mask is locally constant, so finite differences see grad * mask.
    gradcheck_kwargs: ClassVar[dict[str, Any]] = {"eps": 1e-9}
    tolerance: ClassVar[dict[str, Any]] = {"rtol": 0, "atol": 0}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"alpha": 0.0}, r"alpha must lie in \(0.0, 1.0\]"),
        ({"alpha": 1.5}, r"alpha must lie in \(0.0, 1.0\]"),
        ({"alpha": -0.2}, r"alpha must lie in \(0.0, 1.0\]"),
        ({"alpha": float("nan")}, r"alpha must lie in \(0.0, 1.0\]"),
        ({"drop_ratio": 0.2}, "mutually exclusive"),
    ]

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64).to(dtype),)

    def bad_inputs(self) -> list[BadInput]:
        return feature_map_bad_inputs()

    def functional(self, *inputs: torch.Tensor, **config: Any) -> Any:
        return self_threshold_drop(inputs[0], **config)

    def output(self, result: Any) -> torch.Tensor:
        return result[0] if isinstance(result, tuple) else result


class TestSelfThresholdDropRatio(TestSelfThresholdDrop):
    config: ClassVar[dict[str, Any]] = {"drop_ratio": 0.3}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"drop_ratio": 0.0}, r"drop_ratio must lie in \(0.0, 1.0\)"),
        ({"drop_ratio": 1.0}, r"drop_ratio must lie in \(0.0, 1.0\)"),
        ({"alpha": 0.5}, "mutually exclusive"),
    ]
