"""Fused SelfThresholdDrop paths (CPU pass, Triton kernel, autograd function) against the eager reference.

The Triton tests run twice where possible: under the Triton interpreter on CPU tensors (always, in a
``TRITON_INTERPRET=1`` subprocess started by ``test_triton_kernels_in_interpreter``, because the variable
must be set before Triton is imported), and compiled on CUDA tensors when a GPU is present. Shapes are
tiny; tile sizes are shrunk so that they still cover several channel blocks and position blocks.
"""

import contextlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_layers._threshold_drop_autograd import ThresholdDropFunction, fused_threshold_drop
from stadb_layers.kernels import cpu_threshold_drop
from stadb_layers.kernels.threshold_mask import channel_mean_attention, keep_mask_from_attention
from stadb_layers.threshold_drop import SelfThresholdDrop, self_threshold_drop

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()

TRITON_DEVICES = [
    pytest.param(
        "cpu",
        id="interpreter",
        marks=pytest.mark.skipif(
            not (INTERPRET and HAS_TRITON),
            reason="runs in the TRITON_INTERPRET=1 subprocess of test_triton_kernels_in_interpreter",
        ),
    ),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(
            not (HAS_CUDA and HAS_TRITON and not INTERPRET), reason="needs a CUDA GPU and Triton"
        ),
    ),
]
MODES = [pytest.param({"alpha": 0.8}, id="alpha"), pytest.param({"drop_ratio": 0.3}, id="drop_ratio")]
# N = 1, H*W = 1, odd sizes, C not a power of two and larger than the shrunk channel block.
TRITON_SHAPES = [(1, 3, 1, 1), (3, 1, 1, 1), (1, 7, 5, 3), (2, 5, 3, 7), (3, 37, 5, 5), (2, 130, 3, 3)]


def reference(x: torch.Tensor, mode: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, attention, keep)`` of the eager formulation: the rule's reference operators, whole input."""
    attention = channel_mean_attention(x)
    keep = keep_mask_from_attention(attention, mode.get("alpha"), mode.get("drop_ratio"))
    return x * keep, attention, keep


def eager_drop(x: torch.Tensor, **mode: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, keep)`` of the eager formulation, the oracle of the fused paths."""
    out, _, keep = reference(x, mode)
    return out, keep


def assert_bitwise_equal(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Same dtype, shape and bits (NaN payloads aside: NaN == NaN, and -0.0 differs from 0.0)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.is_floating_point():
        same_nan = actual.isnan() & expected.isnan()
        assert bool((same_nan | (actual == expected)).all()), "values differ"
        assert torch.equal(actual.signbit() & ~same_nan, expected.signbit() & ~same_nan), (
            "signs of zero differ"
        )
    else:
        assert torch.equal(actual, expected)


@contextlib.contextmanager
def small_tiles() -> Iterator[None]:
    """Shrink the Triton tiles so tiny tensors still span several channel and position blocks."""
    from stadb_layers.kernels import triton_threshold_drop

    with (
        mock.patch.object(triton_threshold_drop, "_TILE_ELEMENTS", 64),
        mock.patch.object(triton_threshold_drop, "_MAX_BLOCK_HW", 16),
    ):
        yield


def make_input(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    device: str,
    layout: str = "contiguous",
    seed: int = 0,
) -> torch.Tensor:
    """Random input: contiguous, channels_last, or strided (every other W column of a wider map)."""
    generator = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    if layout == "strided":
        x = torch.randn(n, c, h, 2 * w, generator=generator, dtype=torch.float64)[..., ::2]
    else:
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
    x = x.to(device=device, dtype=dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    return x


# --------------------------------------------------------------------------------------------------
# Triton kernels: interpreter (CPU tensors, subprocess) and CUDA.


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")
@pytest.mark.skipif(INTERPRET, reason="already running under TRITON_INTERPRET=1")
def test_triton_kernels_in_interpreter() -> None:
    """Run this file's ``interpreter`` tests in a subprocess with TRITON_INTERPRET=1."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", __file__, "-k", "interpreter", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        command, env=env, cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=600
    )
    summary = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, summary
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed is not None and int(passed.group(1)) >= 30, summary


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", TRITON_SHAPES)
def test_triton_float32_matches_reference_bitwise(
    device: str, mode: dict[str, float], shape: tuple[int, int, int, int]
) -> None:
    # Non-integer inputs: the attention is not exact, yet the mask is bit-identical, because the
    # kernel path takes the attention from the reference reduction.
    x = make_input(shape, torch.float32, device, seed=sum(shape))
    expected_out, expected_attention, expected_keep = reference(x, mode)
    with small_tiles():
        out, attention, keep = fused_threshold_drop(
            x, mode.get("alpha"), mode.get("drop_ratio"), backend="triton"
        )
    assert_bitwise_equal(attention, expected_attention)
    assert_bitwise_equal(keep, expected_keep)
    assert_bitwise_equal(out, expected_out)
    if "alpha" in mode:  # the kernel's own threshold: attention < alpha * per-sample max, exactly
        assert torch.equal(keep, attention < mode["alpha"] * attention.amax(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_triton_layouts_and_dtypes(device: str, layout: str, dtype: torch.dtype) -> None:
    x = make_input((2, 37, 3, 5), dtype, device, layout)
    for mode in ({"alpha": 0.7}, {"drop_ratio": 0.4}):
        expected_out, _, expected_keep = reference(x, mode)
        with small_tiles():
            out, attention, keep = fused_threshold_drop(
                x, mode.get("alpha"), mode.get("drop_ratio"), backend="triton"
            )
        # 16-bit inputs: float32 attention from the same reduction as the reference, so same mask.
        assert attention.dtype == torch.float32 or dtype == torch.float32
        assert_bitwise_equal(keep, expected_keep)
        assert_bitwise_equal(out, expected_out)


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 5, 3, 7), (2, 130, 3, 3)])
def test_triton_backward_is_grad_times_mask(
    device: str, mode: dict[str, float], shape: tuple[int, int, int, int]
) -> None:
    x = make_input(shape, torch.float32, device).requires_grad_(True)
    grad = make_input(shape, torch.float32, device, seed=1)
    with small_tiles():
        out, _, keep = fused_threshold_drop(x, mode.get("alpha"), mode.get("drop_ratio"), backend="triton")
        assert out.grad_fn is not None and out.grad_fn.saved_tensors == (keep,)  # type: ignore[attr-defined]
        (grad_x,) = torch.autograd.grad(out, x, grad)
        assert_bitwise_equal(grad_x, grad * keep)
        # An expanded (stride 0) incoming gradient, as from out.sum().backward().
        out, _, keep = fused_threshold_drop(x, mode.get("alpha"), mode.get("drop_ratio"), backend="triton")
        (grad_x,) = torch.autograd.grad(out.sum(), x)
        assert_bitwise_equal(grad_x, torch.ones_like(x) * keep)


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_inplace(device: str, mode: dict[str, float], layout: str) -> None:
    source = make_input((2, 37, 3, 5), torch.float32, device, layout).requires_grad_(True)
    expected_out, _, expected_keep = reference(source.detach(), mode)
    x = source * 1  # a non-leaf whose value no earlier operator saved
    with small_tiles():
        out, _, keep = fused_threshold_drop(x, mode.get("alpha"), mode.get("drop_ratio"), True, "triton")
        assert out is x
        assert_bitwise_equal(out.detach(), expected_out)
        assert_bitwise_equal(keep, expected_keep)
        out.backward(torch.full_like(out, 2.0))
    assert source.grad is not None
    assert_bitwise_equal(source.grad, 2.0 * expected_keep.expand_as(source).to(torch.float32))


def edge_samples(device: str) -> torch.Tensor:
    """A (7, 6, 2, 3) float32 input with one sample per edge case of the drop rule, then an ordinary one."""
    x = make_input((7, 6, 2, 3), torch.float32, device)
    x[0, 2, 1, 1] = float("nan")  # NaN attention: kept whole
    x[1, :, 0, 2] = float("inf")  # +inf peak: only the peak is dropped (and its inf * 0 is NaN)
    x[2] = -x[2].abs() - 1  # negative peak: kept whole with alpha
    x[3] = -x[3].abs()
    x[3, :, 1, 0] = 0.0  # peak exactly 0: kept whole with alpha
    x[4] = 0.0  # all-zero map (post-ReLU with nothing activated): kept whole with alpha
    x[5, 0, 0, 0], x[5, 1, 0, 0] = float("inf"), float("-inf")  # inf - inf: NaN attention, kept whole
    return x


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NaN * 0 in the interpreter
@pytest.mark.parametrize(
    ("backend", "device"),
    [pytest.param("cpu", "cpu", id="cpu_pass")]
    + [pytest.param("triton", p.values[0], id=p.id, marks=p.marks) for p in TRITON_DEVICES],
)
@pytest.mark.parametrize("mode", MODES)
def test_edge_samples_match_reference(backend: str, device: str, mode: dict[str, float]) -> None:
    x = edge_samples(device)
    expected_out, _, expected_keep = reference(x, mode)
    with small_tiles():
        out, _, keep = fused_threshold_drop(x, mode.get("alpha"), mode.get("drop_ratio"), backend=backend)
    whole = [0, 2, 3, 4, 5] if "alpha" in mode else [0, 5]  # drop_ratio ranks whatever the sign
    assert keep[whole].all() and not keep[[1, 6]].all()
    assert_bitwise_equal(out[whole], x[whole])
    if "alpha" in mode:
        assert int((~keep[1]).sum()) == 1
    assert_bitwise_equal(keep, expected_keep)
    assert_bitwise_equal(out, expected_out)


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_triton_splits_large_batches_over_launches(device: str) -> None:
    from stadb_layers.kernels import triton_threshold_drop

    x = make_input((5, 6, 2, 3), torch.float32, device)
    expected_out, _, expected_keep = reference(x, {"alpha": 0.8})
    with mock.patch.object(triton_threshold_drop, "_MAX_SAMPLES_PER_LAUNCH", 2):
        out, _, keep = fused_threshold_drop(x, 0.8, None, backend="triton")
    assert_bitwise_equal(keep, expected_keep)
    assert_bitwise_equal(out, expected_out)


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_triton_half_precision_mask_uses_float32_attention(device: str) -> None:
    x = bf16_rounding_tie_example().to(device)
    _, attention, keep = fused_threshold_drop(x, 0.8, None, backend="triton")
    assert attention.dtype == torch.float32
    assert keep.flatten().tolist() == [True, False]  # bfloat16 averaging would drop position 0 too


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_module_dispatch_uses_triton_on_cuda(device: str) -> None:
    if device != "cuda":
        pytest.skip("the module picks Triton only for CUDA tensors")
    layer = SelfThresholdDrop(0.8)
    x = make_input((4, 64, 6, 4), torch.bfloat16, device).requires_grad_(True)
    out = layer(x)
    assert out.grad_fn is not None and "ThresholdDrop" in type(out.grad_fn).__name__
    expected_out, expected_keep = eager_drop(x.detach(), alpha=0.8)
    assert_bitwise_equal(out.detach(), expected_out)
    assert layer.last_keep_mask is not None and torch.equal(layer.last_keep_mask, expected_keep)
    # Extra memory of a forward: the output plus (N, 1, H, W) maps, never a second input-sized buffer.
    x = make_input((8, 256, 24, 8), torch.bfloat16, device)
    del out
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        out = layer(x)
    torch.cuda.synchronize()
    out_bytes = out.numel() * out.element_size()
    # Slack for the reduction's workspace and allocator rounding, well below a second buffer.
    assert torch.cuda.max_memory_allocated() - before <= out_bytes + 256 * 1024 < 2 * out_bytes


@pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")
@pytest.mark.skipif(INTERPRET, reason="the interpreter does not compile")
@pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION:UserWarning")
@pytest.mark.parametrize("keep_given", [False, True])
def test_triton_kernel_compiles_for_hopper(keep_given: bool) -> None:
    """Ahead-of-time compilation to an sm_90 cubin (needs no GPU): catches what the interpreter accepts."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from stadb_layers.kernels import triton_threshold_drop

    kernel = triton_threshold_drop._threshold_apply_kernel
    int_args = ["num_samples", "num_channels", "num_positions", "width"]
    strides = [f"stride_{t}{d}" for t in "xo" for d in "nchw"]
    signature = {"x_ptr": "*bf16", "out_ptr": "*bf16", "attention_ptr": "*fp32", "keep_ptr": "*u8"}
    signature |= {name: "i32" for name in int_args + strides} | {"alpha": "fp32"}
    constants = {"KEEP_GIVEN": keep_given, "FLAT_POSITIONS": True, "BLOCK_C": 64, "BLOCK_HW": 64}
    signature |= {name: "constexpr" for name in constants}
    try:
        compiled = triton.compile(
            ASTSource(fn=kernel, signature=signature, constexprs=constants), target=GPUTarget("cuda", 90, 32)
        )
    except RuntimeError as error:  # no usable ptxas in this Triton build
        if "ptxas" not in str(error).lower():
            raise
        pytest.skip(f"cannot compile for CUDA here: {error}")
    assert "ld.global" in compiled.asm["ptx"]


# --------------------------------------------------------------------------------------------------
# CPU pass.


def bf16_rounding_tie_example() -> torch.Tensor:
    """A (1, 3, 1, 2) bfloat16 map whose keep mask depends on the precision of the channel mean.

    Position 1 averages to 1.0, so the threshold is 0.8. Position 0 averages to 0.79948 in float32:
    kept. Averaged in bfloat16 it rounds to 0.80078125, which reaches the bfloat16 threshold
    (0.8 rounds to 0.80078125 as well): dropped.
    """
    column = torch.tensor([0.80078125, 0.80078125, 0.796875])
    return torch.stack([column, torch.ones(3)], dim=-1).view(1, 3, 1, 2).to(torch.bfloat16)


def test_half_precision_mask_differs_from_bf16_averaging_at_rounding_ties() -> None:
    x = bf16_rounding_tie_example()
    _, attention, keep = fused_threshold_drop(x, 0.8, None, backend="cpu")
    assert attention.dtype == torch.float32 and keep.flatten().tolist() == [True, False]
    assert torch.equal(keep, eager_drop(x, alpha=0.8)[1])
    bf16_attention = x.mean(dim=1, keepdim=True)  # the ADL code under autocast: bfloat16 mean
    bf16_keep = bf16_attention < 0.8 * bf16_attention.amax(dim=(2, 3), keepdim=True)
    assert bf16_keep.flatten().tolist() == [False, False]


@st.composite
def cpu_inputs(draw: st.DrawFn) -> torch.Tensor:
    shape = (
        draw(st.integers(1, 5)),
        draw(st.integers(1, 9)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 6)),
    )
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    return make_input(shape, dtype, "cpu", layout, seed=draw(st.integers(0, 2**16)))


@settings(deadline=None, max_examples=60)
@given(
    x=cpu_inputs(),
    mode=st.one_of(
        st.builds(lambda a: {"alpha": a}, st.floats(0.05, 1.0)),
        st.builds(lambda r: {"drop_ratio": r}, st.floats(0.01, 0.99)),
    ),
    chunk_bytes=st.sampled_from([1, 64, cpu_threshold_drop.CHUNK_BYTES]),
    inplace=st.booleans(),
)
def test_cpu_matches_reference(
    x: torch.Tensor, mode: dict[str, float], chunk_bytes: int, inplace: bool
) -> None:
    expected_out, expected_attention, expected_keep = reference(x, mode)
    with mock.patch.object(cpu_threshold_drop, "CHUNK_BYTES", chunk_bytes):
        out, attention, keep = fused_threshold_drop(
            x, mode.get("alpha"), mode.get("drop_ratio"), inplace, "cpu"
        )
    assert (out is x) == inplace
    assert_bitwise_equal(attention, expected_attention)
    assert_bitwise_equal(keep, expected_keep)
    assert_bitwise_equal(out, expected_out)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_chunks_reduce_in_the_same_order_as_the_batch(layout: str, dtype: torch.dtype) -> None:
    # Large enough for ATen to split the reductions across threads; random values, so the sums round.
    x = make_input((6, 300, 11, 13), dtype, "cpu", layout)
    expected_out, expected_attention, expected_keep = reference(x, {"alpha": 0.6})
    for chunk_bytes in (1, 300 * 11 * 13 * x.element_size() * 2 + 7):
        with mock.patch.object(cpu_threshold_drop, "CHUNK_BYTES", chunk_bytes):
            out, attention, keep = fused_threshold_drop(x, 0.6, None, backend="cpu")
        assert_bitwise_equal(attention, expected_attention)
        assert_bitwise_equal(keep, expected_keep)
        assert_bitwise_equal(out, expected_out)


@pytest.mark.parametrize("mode", MODES)
def test_cpu_backward_saves_only_the_compact_mask(mode: dict[str, float]) -> None:
    x = make_input((3, 20, 4, 5), torch.float32, "cpu").requires_grad_(True)
    packed: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        packed.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out, _, keep = fused_threshold_drop(x, mode.get("alpha"), mode.get("drop_ratio"), backend="cpu")
    assert len(packed) == 1 and packed[0] is keep
    assert keep.dtype == torch.bool and keep.shape == (3, 1, 4, 5)
    assert sum(t.numel() * t.element_size() for t in packed) == 3 * 4 * 5  # N*H*W bytes
    assert all(t.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for t in packed)
    assert isinstance(out.grad_fn, ThresholdDropFunction._backward_cls)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert x.grad is not None
    assert_bitwise_equal(x.grad, grad * keep)


def test_cpu_double_backward_stays_differentiable() -> None:
    x = make_input((2, 6, 3, 3), torch.float64, "cpu").requires_grad_(True)
    out, _, keep = fused_threshold_drop(x, 0.8, None, backend="cpu")
    grad_out = torch.randn_like(out, requires_grad=True)
    (grad_x,) = torch.autograd.grad(out, x, grad_out, create_graph=True)
    (second,) = torch.autograd.grad(grad_x.sum(), grad_out)
    assert_bitwise_equal(second, keep.expand_as(x).to(x.dtype))


def test_cpu_gradcheck_float64() -> None:
    x = make_input((2, 3, 4, 5), torch.float64, "cpu").requires_grad_(True)
    for mode in ({"alpha": 0.8}, {"drop_ratio": 0.3}):
        layer = SelfThresholdDrop(mode.get("alpha"), drop_ratio=mode.get("drop_ratio"))
        assert torch.autograd.gradcheck(layer, (x,), eps=1e-9)


def test_inplace_returns_the_input_and_matches_eager() -> None:
    conv = torch.nn.Conv2d(4, 12, 3, padding=1)
    source = make_input((3, 4, 7, 5), torch.float32, "cpu")
    grads = {}
    for inplace in (False, True):
        conv.zero_grad()
        y = conv(source)
        layer = SelfThresholdDrop(0.8, inplace=inplace)
        out = layer(y)
        assert (out is y) == inplace
        expected, expected_keep = eager_drop(conv(source).detach(), alpha=0.8)
        assert_bitwise_equal(out.detach(), expected)
        assert layer.last_keep_mask is not None and torch.equal(layer.last_keep_mask, expected_keep)
        out.pow(2).sum().backward()
        assert conv.weight.grad is not None
        grads[inplace] = conv.weight.grad.clone()
    assert_bitwise_equal(grads[True], grads[False])


def test_inplace_is_refused_where_autograd_forbids_it() -> None:
    layer = SelfThresholdDrop(0.8, inplace=True)
    leaf = make_input((2, 4, 3, 3), torch.float32, "cpu").requires_grad_(True)
    before = leaf.detach().clone()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        layer(leaf)
    assert torch.equal(leaf.detach(), before)  # refused before anything was written
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        layer(leaf[:1])
    # ReLU saves its output, so overwriting it breaks ReLU's backward, as with nn.ReLU(inplace=True).
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        layer(torch.relu(leaf * 1)).sum().backward()
    # Without autograd, writing into a leaf is fine.
    with torch.no_grad():
        out = layer(leaf)
    assert out is leaf and torch.equal(leaf.detach(), eager_drop(before, alpha=0.8)[0])


# --------------------------------------------------------------------------------------------------
# Dispatch, TorchScript and torch.compile.


@pytest.mark.parametrize("mode", MODES)
def test_module_picks_the_fused_cpu_path(mode: dict[str, float]) -> None:
    layer = SelfThresholdDrop(mode.get("alpha"), drop_ratio=mode.get("drop_ratio"))
    x = make_input((3, 16, 6, 4), torch.float32, "cpu").requires_grad_(True)
    out = layer(x)
    assert isinstance(out.grad_fn, ThresholdDropFunction._backward_cls)
    expected, expected_keep = eager_drop(x.detach(), **mode)
    assert_bitwise_equal(out.detach(), expected)
    assert layer.last_keep_mask is not None and torch.equal(layer.last_keep_mask, expected_keep)
    assert layer.last_attention is not None and not layer.last_attention.requires_grad
    assert layer.eval()(x) is x


@pytest.mark.parametrize("mode", MODES)
def test_function_runs_the_modules_fused_path(mode: dict[str, float]) -> None:
    x = make_input((3, 16, 6, 4), torch.float32, "cpu").requires_grad_(True)
    out, keep = self_threshold_drop(x, **mode)
    assert isinstance(out.grad_fn, ThresholdDropFunction._backward_cls)
    expected, expected_keep = eager_drop(x.detach(), **mode)
    assert_bitwise_equal(out.detach(), expected)
    assert torch.equal(keep, expected_keep)
    layer_out = SelfThresholdDrop(mode.get("alpha"), drop_ratio=mode.get("drop_ratio"))(x)
    assert type(layer_out.grad_fn) is type(out.grad_fn)


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("inplace", [False, True])
def test_torchscript_uses_the_eager_formulation(inplace: bool) -> None:
    layer = SelfThresholdDrop(0.8, inplace=inplace)
    scripted = torch.jit.script(layer)
    x = make_input((2, 16, 6, 4), torch.float32, "cpu")
    expected, expected_keep = eager_drop(x, alpha=0.8)
    assert_bitwise_equal(scripted(x.clone()), expected)
    assert scripted.last_keep_mask is not None and torch.equal(scripted.last_keep_mask, expected_keep)


@pytest.mark.parametrize("mode", MODES)
def test_torch_compile_fullgraph(mode: dict[str, float]) -> None:
    torch._dynamo.reset()
    layer = SelfThresholdDrop(mode.get("alpha"), drop_ratio=mode.get("drop_ratio"))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = make_input((2, 16, 6, 4), torch.float32, "cpu").requires_grad_(True)
    out = compiled(x)
    expected, _ = eager_drop(x.detach(), **mode)
    assert_bitwise_equal(out.detach(), expected)
    out.sum().backward()
    assert x.grad is not None
    assert layer.last_keep_mask is not None
    assert_bitwise_equal(x.grad, layer.last_keep_mask.expand_as(x).to(x.dtype))


def test_functorch_transforms_fall_back_to_eager() -> None:
    layer = SelfThresholdDrop(0.8)
    x = make_input((2, 8, 4, 4), torch.float32, "cpu")
    batched = torch.stack([x, -x])
    out = torch.vmap(layer)(batched)
    assert_bitwise_equal(out[1], eager_drop(-x, alpha=0.8)[0])
    grad = torch.func.grad(lambda t: layer(t).sum())(x)
    assert_bitwise_equal(grad, eager_drop(x, alpha=0.8)[1].expand_as(x).to(x.dtype))


def test_other_devices_fall_back_to_eager() -> None:
    x = make_input((2, 5, 3, 3), torch.float32, "meta")
    out, _, keep = fused_threshold_drop(x, 0.8, None)
    assert out.device.type == "meta" and out.shape == x.shape and keep.shape == (2, 1, 3, 3)
