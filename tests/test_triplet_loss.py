"""Tests for the soft-margin batch-hard triplet loss (stadb_layers.triplet_loss)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_layers.triplet_loss import SoftMarginBatchHardTriplet, soft_margin_batch_hard_triplet

from .layer_testing import BadInput, BaseLayerTests

REDUCTIONS = ("mean", "sum", "none")
MARGINS = (None, 0.0, 0.3, 1.0)


def assert_tight(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# Independent reference: python loops over anchors, explicit (a - b).norm() distances, python floats.
# --------------------------------------------------------------------------------------------------
def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def reference_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    normalize: bool = False,
    margin: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    feats = [row.double() for row in features]
    if normalize:
        feats = [row / max(row.norm().item(), 1e-12) for row in feats]
    ids = labels.tolist()
    n = len(ids)
    losses: list[float] = []
    valid = 0
    for a in range(n):
        pos = [(feats[a] - feats[p]).norm().item() for p in range(n) if p != a and ids[p] == ids[a]]
        neg = [(feats[a] - feats[q]).norm().item() for q in range(n) if ids[q] != ids[a]]
        if not pos or not neg:
            losses.append(0.0)
            continue
        valid += 1
        gap = max(pos) - min(neg)
        losses.append(_softplus(gap) if margin is None else max(gap + margin, 0.0))
    if reduction == "none":
        return torch.tensor(losses, dtype=torch.float64)
    total = math.fsum(losses)
    return torch.tensor(total if reduction == "sum" else total / max(valid, 1), dtype=torch.float64)


def n_valid_anchors(labels: torch.Tensor) -> int:
    ids = labels.tolist()
    return sum(
        1
        for a, y in enumerate(ids)
        if any(ids[p] == y for p in range(len(ids)) if p != a) and any(z != y for z in ids)
    )


# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------
@st.composite
def labelled_batches(draw: Any, min_dim: int = 3, max_dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """1..6 identities with 1..5 instances each (singletons included), shuffled, arbitrary label values.

    Features are Gaussian from a drawn seed (D >= 3 so that no two rows nearly coincide by chance,
    which would hit the distance floor); duplicated rows are tested separately.
    """
    counts = draw(st.lists(st.integers(1, 5), min_size=1, max_size=6))
    values = draw(
        st.lists(st.integers(-(10**6), 10**6), min_size=len(counts), max_size=len(counts), unique=True)
    )
    ids = draw(st.permutations([v for v, c in zip(values, counts, strict=True) for _ in range(c)]))
    dim = draw(st.integers(min_dim, max_dim))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(len(ids), dim, generator=gen, dtype=torch.float64)
    features = features * draw(st.sampled_from([1e-3, 1.0, 30.0])) + draw(st.sampled_from([0.0, 5.0]))
    return features, torch.tensor(ids)


SETTINGS = settings(deadline=None, max_examples=60)


# --------------------------------------------------------------------------------------------------
# Exactness against the reference
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(
    batch=labelled_batches(),
    normalize=st.booleans(),
    margin=st.sampled_from(MARGINS),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_matches_reference(
    batch: tuple[torch.Tensor, torch.Tensor], normalize: bool, margin: float | None, reduction: str
) -> None:
    features, labels = batch
    got = soft_margin_batch_hard_triplet(
        features, labels, normalize=normalize, margin=margin, reduction=reduction
    )
    want = reference_loss(features, labels, normalize, margin, reduction)
    assert got.dtype == torch.float64
    assert got.shape == want.shape
    assert_tight(got, want)
    module = SoftMarginBatchHardTriplet(normalize=normalize, margin=margin, reduction=reduction)
    torch.testing.assert_close(module(features, labels), got, rtol=0, atol=0)


@pytest.mark.parametrize(
    "labels",
    [
        [0, 0, 0, 0, 0],  # one identity: no negatives anywhere
        [0, 1, 2, 3, 4],  # all singletons: no positives anywhere
        [7, 7, 3, 9, 9, 9],  # a singleton among pairs / triples
        [1, 2, 1, 2, 1, 2, 1, 2],
    ],
)
@pytest.mark.parametrize("dim", [1, 2, 16])
@pytest.mark.parametrize("margin", MARGINS)
def test_small_batches_match_reference(labels: list[int], dim: int, margin: float | None) -> None:
    gen = torch.Generator().manual_seed(len(labels) * 100 + dim)
    features = torch.randn(len(labels), dim, generator=gen, dtype=torch.float64)
    y = torch.tensor(labels)
    for reduction in REDUCTIONS:
        got = soft_margin_batch_hard_triplet(features, y, margin=margin, reduction=reduction)
        assert_tight(got, reference_loss(features, y, False, margin, reduction))


def test_docstring_example_by_hand() -> None:
    features = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # gaps d_ap - d_an per anchor: 1-3, 1-2, 1-2, 1-3
    gaps = torch.tensor([-2.0, -1.0, -1.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(soft_margin_batch_hard_triplet(features, labels), F.softplus(gaps).mean())
    torch.testing.assert_close(
        soft_margin_batch_hard_triplet(features, labels, margin=1.5, reduction="none"),
        torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64),
    )


def test_label_dtypes() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    ids = [0, 0, 1, 1, 1, 2]
    expected = soft_margin_batch_hard_triplet(features, torch.tensor(ids))
    for labels in (
        torch.tensor(ids, dtype=torch.int32),
        torch.tensor(ids, dtype=torch.uint8),
        torch.tensor(ids, dtype=torch.float32) * 0.5,
    ):
        torch.testing.assert_close(soft_margin_batch_hard_triplet(features, labels), expected)
    bool_labels = torch.tensor([True, True, False, False, False, True])
    torch.testing.assert_close(
        soft_margin_batch_hard_triplet(features, bool_labels), reference_loss(features, bool_labels)
    )


# --------------------------------------------------------------------------------------------------
# Differential test against pytorch-metric-learning
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(batch=labelled_batches(), normalize=st.booleans(), margin=st.sampled_from(MARGINS))
def test_matches_pytorch_metric_learning(
    batch: tuple[torch.Tensor, torch.Tensor], normalize: bool, margin: float | None
) -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
    pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")

    # Fairness adjustments:
    # * BatchHardMiner() defaults to LpDistance(normalize_embeddings=True), i.e. it would mine the hardest
    #   pairs on L2-normalised embeddings while the loss measures raw distances. The miner is given the
    #   same distance as the loss, so both mine and measure in one space (ours mines on what it measures).
    # * MeanReducer instead of the default AvgNonZeroReducer: we average over all valid anchors.
    # * PML also drops anchors with no positive (singletons) or no negative (single-label batches)
    #   (a1p_keep & a2n_keep in BatchEasyHardMiner) and returns 0 when nothing is mined, like us.
    # * Ties between candidate positives / negatives pick different indices (torch.max takes the first,
    #   we use amax / amin), but the tied distances are equal, so the loss is the same. Gradients are
    #   compared only here, on Gaussian features, where ties have probability zero.
    distance = pml_distances.LpDistance(normalize_embeddings=normalize)
    criterion = pml_losses.TripletMarginLoss(
        margin=0.0 if margin is None else margin,
        smooth_loss=margin is None,
        distance=distance,
        reducer=pml_reducers.MeanReducer(),
    )
    miner = pml_miners.BatchHardMiner(distance=pml_distances.LpDistance(normalize_embeddings=normalize))

    features, labels = batch
    x_pml = features.clone().requires_grad_(True)
    want = criterion(x_pml, labels, miner(x_pml, labels))
    x_ours = features.clone().requires_grad_(True)
    got = soft_margin_batch_hard_triplet(x_ours, labels, normalize=normalize, margin=margin)
    assert_tight(got, want)

    if want.requires_grad:  # PML's zero loss for an empty mining result has no graph
        want.backward()
        got.backward()
        assert x_pml.grad is not None and x_ours.grad is not None
        torch.testing.assert_close(x_ours.grad, x_pml.grad, rtol=1e-7, atol=1e-9)


def test_matches_pytorch_metric_learning_with_ties() -> None:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    gen = torch.Generator().manual_seed(3)
    features = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    features[1] = features[0]  # duplicated positive of anchor 0 ...
    features[2] = features[0]  # ... twice: a tie for the hardest positive of anchor 3 ...
    features[5] = features[3] + 0.0  # ... and for the hardest negative of anchors 6 and 7
    labels = torch.tensor([0, 0, 0, 1, 2, 1, 2, 2, 3])
    criterion = TripletMarginLoss(
        margin=0.0, smooth_loss=True, distance=LpDistance(normalize_embeddings=False), reducer=MeanReducer()
    )
    miner = BatchHardMiner(distance=LpDistance(normalize_embeddings=False))
    want = criterion(features, labels, miner(features, labels))
    assert_tight(soft_margin_batch_hard_triplet(features, labels), want)


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("margin", [None, 0.0, 0.5])
@pytest.mark.parametrize("normalize", [False, True])
def test_gradients_finite_with_coinciding_features(
    dtype: torch.dtype, margin: float | None, normalize: bool
) -> None:
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    base[1] = base[0]  # anchor 0's only positive is identical to it: d_ap = 0
    base[3] = base[2]  # identical pair inside a larger identity
    base[6] = base[4]  # identical rows with *different* labels: d_an = 0
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    features = base.to(dtype).requires_grad_(True)
    loss = soft_margin_batch_hard_triplet(features, labels, normalize=normalize, margin=margin)
    loss.backward()
    assert features.grad is not None
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    want = reference_loss(base.to(dtype), labels, normalize, margin)
    atol = 1e-8 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(loss.double(), want, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("margin", [None, 0.2])
def test_all_identical_features(dtype: torch.dtype, margin: float | None) -> None:
    features = torch.full((6, 4), 3.25, dtype=dtype, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = soft_margin_batch_hard_triplet(features, labels, margin=margin)
    loss.backward()
    # every gap is exactly 0 - 0
    expected = math.log(2.0) if margin is None else margin
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert features.grad is not None
    assert torch.isfinite(features.grad).all()


def test_diagonal_is_ignored_for_zero_vectors() -> None:
    features = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        features[2:] = 1.0
    labels = torch.tensor([0, 0, 1, 1])
    loss = soft_margin_batch_hard_triplet(features, labels, reduction="none")
    torch.testing.assert_close(loss, F.softplus(torch.full((4,), -math.sqrt(3.0), dtype=torch.float64)))
    loss.sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


# --------------------------------------------------------------------------------------------------
# No valid anchor / empty batch
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4], [5, 5, 5, 5, 5], [2], []])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [None, 0.3])
def test_no_valid_anchor_gives_zero_with_graph(
    labels: list[int], reduction: str, margin: float | None
) -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(len(labels), 8, generator=gen).requires_grad_(True)
    loss = soft_margin_batch_hard_triplet(features, torch.tensor(labels), margin=margin, reduction=reduction)
    assert loss.requires_grad
    assert loss.shape == ((len(labels),) if reduction == "none" else ())
    assert torch.equal(loss.detach(), torch.zeros_like(loss))
    loss.sum().backward()
    assert features.grad is not None
    assert torch.equal(features.grad, torch.zeros_like(features))


# --------------------------------------------------------------------------------------------------
# Numerical range
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1e15, 1e20, 1e30])
def test_huge_features_give_finite_loss(scale: float) -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(12, 16, generator=gen)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    features = (base * scale).requires_grad_(True)
    assert torch.isfinite(features).all()

    gaps = reference_loss(base, labels, margin=0.0, reduction="none")  # relu(gap) per anchor
    loss = soft_margin_batch_hard_triplet(features, labels)
    # a naive log(1 + exp(.)) of these gaps overflows in float32
    assert not torch.isfinite(torch.log1p(torch.exp((gaps * scale).float()[gaps > 0]))).any()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # For gaps this large softplus(g) == relu(g), so the loss is scale * hard-margin-0 loss of base.
    torch.testing.assert_close(loss.double() / scale, gaps.mean(), rtol=1e-4, atol=1e-6)
    loss.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_features_near_float32_max() -> None:
    # A batch sum of these rows overflows float32, so the batch mean must be taken on rescaled features.
    gen = torch.Generator().manual_seed(8)
    base = torch.randn(12, 16, generator=gen)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    features = ((2.0 + 0.01 * base) * 1e38).requires_grad_(True)
    assert torch.isfinite(features).all() and not torch.isfinite(features.sum(dim=0)).all()
    loss = soft_margin_batch_hard_triplet(features, labels, margin=0.0)
    want = soft_margin_batch_hard_triplet(base.double(), labels, margin=0.0) * 1e36
    torch.testing.assert_close(loss.double(), want, rtol=1e-4, atol=0.0)
    loss.backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1e10, 1e30])
def test_hard_margin_zero_is_positively_homogeneous_in_float32(scale: float) -> None:
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(10, 32, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 4])
    want = soft_margin_batch_hard_triplet(base, labels, margin=0.0, reduction="none") * scale
    got = soft_margin_batch_hard_triplet(base * scale, labels, margin=0.0, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0.0)


def test_common_offset_does_not_cancel_in_float32() -> None:
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(10, 64, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 4])
    offset = 100.0
    want = reference_loss(base, labels, reduction="none")
    got = soft_margin_batch_hard_triplet((base + offset).float(), labels, reduction="none")
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_float32(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(12, 64, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss = soft_margin_batch_hard_triplet(features, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss.double(), reference_loss(features.detach().double(), labels), rtol=1e-5, atol=1e-5
    )
    loss.backward()
    assert features.grad is not None and features.grad.dtype == dtype


def test_cpu_bf16_autocast_keeps_float32_accuracy() -> None:
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(16, 256, generator=gen) + 3.0
    labels = torch.arange(16) // 4
    want = soft_margin_batch_hard_triplet(features, labels)
    module = SoftMarginBatchHardTriplet()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = module(features, labels)
        got_bf16_in = module(features.bfloat16(), labels)
    assert got.dtype == torch.float32 and got_bf16_in.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    want_bf16 = soft_margin_batch_hard_triplet(features.bfloat16(), labels)
    torch.testing.assert_close(got_bf16_in, want_bf16, rtol=1e-6, atol=1e-6)


@settings(deadline=None, max_examples=60)
@given(
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
    position=st.tuples(st.integers(0, 5), st.integers(0, 3)),
    # With valid anchors, with none (all labels distinct, or a single label).
    labels=st.sampled_from([[0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5], [7] * 6]),
    normalize=st.booleans(),
    margin=st.sampled_from([None, 0.0, 0.3]),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
)
def test_nonfinite_features_give_a_nan_loss(
    value: float,
    position: tuple[int, int],
    labels: list[int],
    normalize: bool,
    margin: float | None,
    reduction: str,
    dtype: torch.dtype,
) -> None:
    # Propagate, never a finite stand-in: the masks used to turn NaN distances into 0 and report ln 2.
    features = torch.randn(6, 4, generator=torch.Generator().manual_seed(9)).to(dtype)
    features[position] = value
    features.requires_grad_(True)
    loss = soft_margin_batch_hard_triplet(
        features, torch.tensor(labels), normalize=normalize, margin=margin, reduction=reduction
    )
    assert loss.shape == ((6,) if reduction == "none" else ()) and loss.isnan().all()
    loss.sum().backward()  # NaN gradients are fine; backward itself must work
    assert features.grad is not None


# --------------------------------------------------------------------------------------------------
# The generic battery (tests/layer_testing.py): input and argument checks, gradcheck, compile
# --------------------------------------------------------------------------------------------------
class TestSoftMarginBatchHardTriplet(BaseLayerTests):
    layer_class = SoftMarginBatchHardTriplet
    has_functional = True
    training_modes = (True,)  # the loss has no mode-dependent behaviour
    gradcheck_configs: ClassVar[list[dict[str, Any]]] = [
        {"normalize": normalize, "margin": margin, "reduction": reduction}
        for normalize in (False, True)
        for margin in (None, 0.5)
        for reduction in REDUCTIONS
    ]
    gradcheck_kwargs: ClassVar[dict[str, Any]] = {"eps": 1e-6, "atol": 1e-6, "rtol": 1e-5}
    bad_arguments: ClassVar[list[tuple[dict[str, Any], str]]] = [
        *(
            ({"margin": margin}, r"margin must lie in \[0\.0, inf\)")
            for margin in (-0.1, -1e-12, math.nan, math.inf)
        ),
        *(
            ({"reduction": reduction}, "reduction must be one of 'mean', 'sum' or 'none'")
            for reduction in ("avg", "Mean", "", "batchmean")
        ),
    ]

    def inputs(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
        features = torch.randn(9, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        return features.to(dtype), torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4])

    def expected_shape(self, *inputs: torch.Tensor) -> tuple[int, ...]:
        return ()

    def functional(self, *inputs: torch.Tensor, **config: Any) -> Any:
        return soft_margin_batch_hard_triplet(*inputs, **config)

    def compile_inputs(self) -> list[tuple[torch.Tensor, ...]]:
        # More rows than one vector of 8 or 16 floats: inductor's tiled backward once read the Gram
        # matrix's diagonal after overwriting it (wrong gradients from a 9 x 9 batch on AVX2 CPUs).
        features = torch.randn(21, 4, generator=torch.Generator().manual_seed(7))
        labels = torch.arange(21) % 6
        poisoned = features.clone()
        poisoned[3, 1] = math.nan  # non-finite features propagate in the compiled form too
        return [(features, labels), (poisoned, labels)]

    def dynamic_inputs(self) -> list[tuple[torch.Tensor, ...]]:
        generator = torch.Generator().manual_seed(8)
        return [(torch.randn(n, 4, generator=generator), torch.arange(n) % 4) for n in (9, 13, 21)]

    def bad_inputs(self) -> list[BadInput]:
        return [
            ((torch.randn(6), torch.zeros(6)), r"features must be a 2-D \(N, D\) tensor, got 1 dim"),
            ((torch.randn(2, 3, 4), torch.zeros(2)), r"features must be a 2-D \(N, D\) tensor, got 3 dim"),
            ((torch.ones(4, 3, dtype=torch.long), torch.zeros(4)), "features must be a floating tensor"),
            ((torch.ones(4, 3, dtype=torch.complex64), torch.zeros(4)), "features must be a floating tensor"),
            ((torch.randn(4, 0), torch.zeros(4)), "features must have at least one feature dimension"),
            ((torch.randn(4, 3), torch.zeros(4, 1)), r"labels must be a 1-D \(N,\) tensor, got 2 dim"),
            ((torch.randn(4, 3), torch.tensor(1)), r"labels must be a 1-D \(N,\) tensor, got 0 dim"),
            (
                (torch.randn(4, 3), torch.zeros(5)),
                "labels must hold one label per row of features, got 5 labels for 4",
            ),
        ]


def test_module_repr_and_no_parameters() -> None:
    module = SoftMarginBatchHardTriplet(normalize=True, margin=0.3, reduction="sum")
    assert repr(module) == "SoftMarginBatchHardTriplet(normalize=True, margin=0.3, reduction='sum')"
    assert list(module.parameters()) == []
    assert "margin=None" in repr(SoftMarginBatchHardTriplet())


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(batch=labelled_batches(), normalize=st.booleans(), margin=st.sampled_from(MARGINS))
def test_reductions_are_consistent_and_nonnegative(
    batch: tuple[torch.Tensor, torch.Tensor], normalize: bool, margin: float | None
) -> None:
    features, labels = batch
    kwargs: dict[str, Any] = {"normalize": normalize, "margin": margin}
    per_anchor = soft_margin_batch_hard_triplet(features, labels, reduction="none", **kwargs)
    total = soft_margin_batch_hard_triplet(features, labels, reduction="sum", **kwargs)
    mean = soft_margin_batch_hard_triplet(features, labels, reduction="mean", **kwargs)
    assert torch.isfinite(per_anchor).all() and (per_anchor >= 0).all()
    assert_tight(per_anchor.sum(), total)
    assert_tight(mean * max(n_valid_anchors(labels), 1), total)
    if margin is None:  # softplus > 0, so exactly the valid anchors are non-zero
        assert int((per_anchor > 0).sum()) == n_valid_anchors(labels)


@SETTINGS
@given(batch=labelled_batches(), data=st.data(), normalize=st.booleans(), margin=st.sampled_from(MARGINS))
def test_permutation_and_relabelling(
    batch: tuple[torch.Tensor, torch.Tensor], data: Any, normalize: bool, margin: float | None
) -> None:
    features, labels = batch
    n = labels.numel()
    perm = torch.tensor(data.draw(st.permutations(range(n))), dtype=torch.long)
    kwargs: dict[str, Any] = {"normalize": normalize, "margin": margin, "reduction": "none"}
    per_anchor = soft_margin_batch_hard_triplet(features, labels, **kwargs)
    permuted = soft_margin_batch_hard_triplet(features[perm], labels[perm], **kwargs)
    assert_tight(permuted, per_anchor[perm])
    # any injective relabelling (here: x -> 3x + 11, then to float) leaves the loss unchanged
    relabelled = soft_margin_batch_hard_triplet(features, (labels * 3 + 11).double(), **kwargs)
    assert_tight(relabelled, per_anchor)


@SETTINGS
@given(batch=labelled_batches(), data=st.data(), margin=st.sampled_from(MARGINS))
def test_translation_invariance(
    batch: tuple[torch.Tensor, torch.Tensor], data: Any, margin: float | None
) -> None:
    features, labels = batch
    shift = torch.tensor(
        data.draw(st.lists(st.floats(-50, 50), min_size=features.shape[1], max_size=features.shape[1])),
        dtype=torch.float64,
    )
    per_anchor = soft_margin_batch_hard_triplet(features, labels, margin=margin, reduction="none")
    shifted = soft_margin_batch_hard_triplet(features + shift, labels, margin=margin, reduction="none")
    torch.testing.assert_close(shifted, per_anchor, rtol=1e-7, atol=1e-7)


@SETTINGS
@given(batch=labelled_batches(), scale=st.floats(1e-3, 1e3), row_scale=st.floats(0.1, 10.0))
def test_scaling(batch: tuple[torch.Tensor, torch.Tensor], scale: float, row_scale: float) -> None:
    features, labels = batch
    # the hard-margin-0 loss is positively homogeneous of degree one
    hard = soft_margin_batch_hard_triplet(features, labels, margin=0.0, reduction="none")
    scaled = soft_margin_batch_hard_triplet(features * scale, labels, margin=0.0, reduction="none")
    assert_tight(scaled, hard * scale)
    # normalize=True ignores a positive rescaling of any row
    row_scales = torch.ones(features.shape[0], 1, dtype=torch.float64)
    row_scales[::2] = row_scale
    normalized = soft_margin_batch_hard_triplet(features, labels, normalize=True)
    rescaled = soft_margin_batch_hard_triplet(features * row_scales, labels, normalize=True)
    assert_tight(rescaled, normalized)


@SETTINGS
@given(batch=labelled_batches(), normalize=st.booleans(), m1=st.floats(0.0, 2.0), m2=st.floats(0.0, 2.0))
def test_soft_versus_hard_margin(
    batch: tuple[torch.Tensor, torch.Tensor], normalize: bool, m1: float, m2: float
) -> None:
    features, labels = batch
    kwargs: dict[str, Any] = {"normalize": normalize, "reduction": "none"}
    soft = soft_margin_batch_hard_triplet(features, labels, **kwargs)
    hard0 = soft_margin_batch_hard_triplet(features, labels, margin=0.0, **kwargs)
    # relu(g) <= softplus(g) <= relu(g) + log 2, per anchor
    assert (hard0 <= soft).all()
    assert (soft <= hard0 + math.log(2.0) + 1e-12).all()
    # the hard-margin loss is non-decreasing and 1-Lipschitz in the margin
    low, high = sorted((m1, m2))
    hard_low = soft_margin_batch_hard_triplet(features, labels, margin=low, **kwargs)
    hard_high = soft_margin_batch_hard_triplet(features, labels, margin=high, **kwargs)
    assert (hard_low <= hard_high).all()
    assert (hard_high - hard_low <= (high - low) + 1e-12).all()
