"""Tests of BatchDrop and batch_drop: the generic drop-layer battery, the block's geometry and draws."""

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_layers import BatchDrop, batch_drop

from .drop_layer_testing import DropLayerTests
from .layer_testing import BadInput, feature_map_bad_inputs


@contextmanager
def same_draws(seed: int = 0) -> Iterator[None]:
    """Run a block with the global RNG seeded to ``seed``, restoring its state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class SameDrawBatchDrop(BatchDrop):
    """BatchDrop whose every training call draws the same block, so two calls can be compared."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        with same_draws():
            return super().forward(x)


class TestBatchDrop(DropLayerTests):
    layer_class = SameDrawBatchDrop
    config: ClassVar[dict[str, Any]] = {"height_ratio": 0.3, "width_ratio": 0.6}
    has_functional = True
    # The mask does not depend on x, so finite differences see grad * mask exactly.
    gradcheck_kwargs: ClassVar[dict[str, Any]] = {"eps": 1e-6}
    tolerance: ClassVar[dict[str, Any]] = {"rtol": 0, "atol": 0}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        ({"height_ratio": 0.0}, r"height_ratio must lie in \(0.0, 1.0\]"),
        ({"height_ratio": 1.5}, r"height_ratio must lie in \(0.0, 1.0\]"),
        ({"height_ratio": float("nan")}, r"height_ratio must lie in \(0.0, 1.0\]"),
        ({"width_ratio": -0.1}, r"width_ratio must lie in \(0.0, 1.0\]"),
        ({"width_ratio": float("inf")}, r"width_ratio must lie in \(0.0, 1.0\]"),
    ]

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(2, 3, 7, 5, generator=generator, dtype=torch.float64).to(dtype),)

    def bad_inputs(self) -> list[BadInput]:
        return feature_map_bad_inputs()

    def functional(self, *inputs: torch.Tensor, **config: Any) -> Any:
        with same_draws():
            return batch_drop(inputs[0], **config)

    def output(self, result: Any) -> torch.Tensor:
        return result[0] if isinstance(result, tuple) else result

    def test_compile(self) -> None:
        self.assert_compiled_draws_match({}, [self.inputs()])

    def test_compile_dynamic(self) -> None:
        self.assert_compiled_draws_match({"dynamic": True}, self.dynamic_inputs())

    def assert_compiled_draws_match(
        self, options: dict[str, Any], input_sets: Sequence[tuple[torch.Tensor, ...]]
    ) -> None:
        # The random offsets are part of the graph; with Inductor's fallback to ATen's random ops, the
        # compiled layer draws what the eager one draws from the same seed.
        torch._dynamo.reset()
        layer = BatchDrop(**self.config)
        compiled = torch.compile(layer, fullgraph=True, **options)
        with torch._inductor.config.patch(fallback_random=True):
            for (x,) in input_sets:
                results = []
                for module in (layer, compiled):
                    leaf = x.clone().requires_grad_(True)
                    with same_draws(3):
                        out = module(leaf)
                    out.sum().backward()
                    results.append((out.detach(), leaf.grad))
                (expected, expected_grad), (actual, grad) = results
                assert not bool((expected != 0).all())  # a block was dropped
                torch.testing.assert_close(actual, expected, rtol=0, atol=0)
                torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 12),
    st.integers(1, 12),
    st.floats(0.01, 1.0),
    st.floats(0.01, 1.0),
    st.integers(0, 2**16),
)
def test_one_block_of_the_stated_size_shared_by_the_batch(n, h, w, height_ratio, width_ratio, seed) -> None:
    x = torch.rand(n, 2, h, w) + 1  # no zeros of its own
    with same_draws(seed):
        out, keep = batch_drop(x, height_ratio, width_ratio)
    block_h, block_w = max(1, round(height_ratio * h)), max(1, round(width_ratio * w))
    dropped = (~keep[0, 0]).nonzero()
    assert keep.shape == (1, 1, h, w) and keep.dtype == torch.bool
    assert len(dropped) == block_h * block_w  # one rectangle of exactly that size
    top, left = dropped.min(0).values.tolist()
    assert dropped.max(0).values.tolist() == [top + block_h - 1, left + block_w - 1]
    assert torch.equal(out == 0, (~keep).expand_as(x))  # every sample and channel, the same block
    assert torch.equal(out[:, :, keep[0, 0]], x[:, :, keep[0, 0]])


def test_every_offset_is_drawn() -> None:
    torch.manual_seed(0)
    drop = BatchDrop(height_ratio=0.3, width_ratio=1.0)  # 3 rows of 10: tops 0..7
    tops = Counter(int((drop(torch.ones(1, 1, 10, 4)) == 0).all(3)[0, 0].nonzero()[0]) for _ in range(400))
    assert sorted(tops) == list(range(8)) and min(tops.values()) > 20


def test_repr_and_eval_mode() -> None:
    assert repr(BatchDrop()) == "BatchDrop(height_ratio=0.3, width_ratio=1.0)"
    x = torch.ones(1, 1, 4, 4)
    assert BatchDrop().eval()(x) is x
    with pytest.raises(ValueError, match="x must be a 4-D"):
        BatchDrop().eval()(torch.ones(4, 4))


def test_batch_drop_erases_one_shared_stripe() -> None:
    torch.manual_seed(0)
    out = BatchDrop(height_ratio=0.3, width_ratio=1.0)(torch.ones(4, 2, 10, 4))
    zero_rows = (out == 0).all(dim=3)
    assert torch.equal(zero_rows, zero_rows[:1, :1].expand_as(zero_rows)), "same stripe for all"
    assert int(zero_rows[0, 0].sum()) == 3
    assert torch.equal(BatchDrop().eval()(torch.ones(1, 1, 4, 4)), torch.ones(1, 1, 4, 4))
