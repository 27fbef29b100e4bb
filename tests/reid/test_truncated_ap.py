"""The mAP truncated at rank N (``eval.ap_at``), as the STADB authors' ``eval_func_gpu`` computes it.

Their evaluator removes the gallery entries with the query's identity and camera, keeps the first N
entries of what remains, and divides the summed precisions at the hits among them by the number of
correct matches in the *whole* remaining gallery. The reference below is an independent per-query loop
over plain numpy arrays written from that description.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stadb_reid.cli import app
from stadb_reid.config import load_config
from stadb_reid.engine.evaluate import rank_test_sets
from stadb_reid.evaluation import evaluate_from_features, pairwise_distance, rank_metrics
from stadb_reid.evaluation.features import Embeddings
from stadb_reid.evaluation.metrics import EvaluationProtocol, format_truncated_ap, truncated_ap_key

Floats = npt.NDArray[np.floating[Any]]
Ints = npt.NDArray[np.int64]
Problem = tuple[Floats, Ints, Ints, Ints, Ints]


def reference_truncated_ap(
    distmat: Floats, q_pids: Ints, g_pids: Ints, q_camids: Ints, g_camids: Ints, ap_at: int
) -> tuple[float, npt.NDArray[np.float64]] | None:
    """Per-query AP cut at rank ``ap_at`` (0: not cut), mean by fsum; ``None`` without a valid query."""
    per_query = np.full(len(q_pids), np.nan)
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")  # ties by gallery index, as documented
        junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        hits = g_pids[order][~junk] == q_pids[i]
        num_relevant = int(hits.sum())
        if num_relevant == 0:
            continue
        total, found = 0.0, 0
        for rank, hit in enumerate(hits, start=1):
            if ap_at and rank > ap_at:
                break
            if hit:
                found += 1
                total += found / rank
        per_query[i] = total / num_relevant
    valid = ~np.isnan(per_query)
    if not valid.any():
        return None
    return math.fsum(per_query[valid]) / int(valid.sum()), per_query


@st.composite
def problems(draw: st.DrawFn, max_query: int = 6, max_gallery: int = 24) -> Problem:
    """Random labels and a distance matrix with many ties (small integers) or none (floats)."""
    nq = draw(st.integers(1, max_query))
    ng = draw(st.integers(1, max_gallery))
    num_ids = draw(st.integers(1, 4))
    num_cams = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q_pids = rng.integers(0, num_ids, nq)
    g_pids = rng.integers(0, num_ids, ng)
    q_camids = rng.integers(0, num_cams, nq)
    g_camids = rng.integers(0, num_cams, ng)
    tied = draw(st.booleans())
    distmat = rng.integers(0, 4, (nq, ng)).astype(np.float32) if tied else rng.random((nq, ng))
    return distmat, q_pids, g_pids, q_camids, g_camids


@settings(max_examples=150, deadline=None)
@given(
    problem=problems(),
    ap_at=st.integers(1, 30),
    chunk_size=st.integers(1, 4),
    protocol=st.sampled_from(["market1501", "cuhk03"]),
)
def test_truncated_ap_equals_per_query_reference(
    problem: Problem, ap_at: int, chunk_size: int, protocol: EvaluationProtocol
) -> None:
    expected = reference_truncated_ap(*problem, ap_at)
    if expected is None:
        with pytest.raises(ValueError, match="no query has a valid match"):
            rank_metrics(*problem, max_rank=1, ap_at=ap_at)
        return
    m = rank_metrics(*problem, max_rank=1, protocol=protocol, chunk_size=chunk_size, ap_at=ap_at)
    assert m.ap_at == ap_at
    assert m.mean_ap_at == expected[0]
    np.testing.assert_array_equal(m.average_precision_at, expected[1])
    # The full AP is still there and is the reference's uncut value.
    full = reference_truncated_ap(*problem, 0)
    assert full is not None and m.mean_ap == full[0]


@settings(max_examples=80, deadline=None)
@given(problem=problems(), extra=st.integers(0, 5))
def test_cut_at_or_beyond_the_gallery_is_the_full_ap(problem: Problem, extra: int) -> None:
    ng = problem[0].shape[1]
    if reference_truncated_ap(*problem, 0) is None:
        return
    m = rank_metrics(*problem, max_rank=1, ap_at=ng + extra)
    assert m.mean_ap_at == m.mean_ap
    np.testing.assert_array_equal(m.average_precision_at, m.average_precision)


@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_truncated_ap_grows_with_the_cut_up_to_the_full_ap(problem: Problem) -> None:
    if reference_truncated_ap(*problem, 0) is None:
        return
    ng = problem[0].shape[1]
    values: list[float] = []
    for n in range(1, ng + 1):
        value = rank_metrics(*problem, max_rank=1, ap_at=n).mean_ap_at
        assert value is not None
        values.append(value)
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[-1] == rank_metrics(*problem, max_rank=1).mean_ap


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nq=st.integers(1, 9),
    ng=st.integers(2, 20),
    ap_at=st.integers(1, 12),
    chunk_size=st.integers(1, 5),
)
def test_features_path_equals_reference_on_its_distances(seed, nq, ng, ap_at, chunk_size):
    rng = np.random.default_rng(seed)
    q, g = rng.integers(-2, 3, (nq, 3)), rng.integers(-2, 3, (ng, 3))  # integer features: exact, tied
    labels = rng.integers(0, 3, nq), rng.integers(0, 3, ng), rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    distmat = pairwise_distance(q, g, chunk_size=chunk_size).numpy()
    expected = reference_truncated_ap(distmat, *labels, ap_at)
    if expected is None:
        return
    m = evaluate_from_features(q, g, *labels, max_rank=1, chunk_size=chunk_size, ap_at=ap_at)
    assert m.mean_ap_at == expected[0]


def test_hand_worked_example():
    # Query: identity 1, camera 0. Ranked gallery: junk (1, cam 0), hit, miss, miss, hit, hit.
    distmat = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids, g_camids = np.array([1, 1, 2, 3, 1, 1]), np.array([0, 1, 1, 1, 2, 2])
    m = rank_metrics(distmat, [1], g_pids, [0], g_camids, max_rank=5, ap_at=4)
    # Without the junk the hits are at ranks 1, 4, 5; P = 3; only ranks <= 4 count: (1/1 + 2/4) / 3.
    assert m.mean_ap_at == pytest.approx((1 + 2 / 4) / 3)
    assert m.mean_ap == pytest.approx((1 + 2 / 4 + 3 / 5) / 3)
    assert m.summary()["mAP_at_4"] == pytest.approx(50.0)


def test_summary_and_label():
    distmat = np.array([[0.1, 0.5, 0.2, 0.9], [0.4, 0.3, 0.8, 0.1]])
    labels = ([1, 2], [1, 2, 3, 1], [0, 0], [1, 1, 1, 0])
    plain = rank_metrics(distmat, *labels, max_rank=4)
    assert plain.mean_ap_at is None and plain.average_precision_at is None
    assert truncated_ap_key(1) not in plain.summary() and format_truncated_ap(plain.summary()) == ""
    cut = rank_metrics(distmat, *labels, max_rank=4, ap_at=1).summary()
    assert list(cut) == ["rank1", "rank5", "rank10", "mAP", "mINP", "mAP_at_1"]
    assert (cut["mAP"], cut["mAP_at_1"]) == (75.0, 50.0)
    assert format_truncated_ap(cut) == "  mAP@1 50.0%"


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_ap_at_is_rejected_naming_it(bad):
    with pytest.raises(ValueError, match="ap_at"):
        rank_metrics(np.zeros((1, 2)), [1], [1, 2], [0], [1, 1], max_rank=2, ap_at=bad)


@pytest.mark.parametrize("rerank", [False, True])
def test_rank_test_sets_follows_eval_ap_at(rerank):
    rng = np.random.default_rng(0)
    query = Embeddings(torch.randn(6, 4), rng.integers(0, 3, 6), np.zeros(6, dtype=np.int64))
    gallery = Embeddings(torch.randn(20, 4), np.arange(20) % 3, np.ones(20, dtype=np.int64))
    config = load_config([], {"eval.ap_at": 3, "eval.rerank": rerank})
    metrics, distances = rank_test_sets(query, gallery, config)
    distmat = pairwise_distance(query.features, gallery.features).numpy() if distances is None else distances
    expected = reference_truncated_ap(distmat, query.pids, gallery.pids, query.camids, gallery.camids, 3)
    assert expected is not None
    assert metrics.summary()["mAP_at_3"] == pytest.approx(100 * expected[0], abs=1e-9)


def test_ap_at_option_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path):
    seen: dict[str, Any] = {}
    monkeypatch.setattr("stadb_reid.engine.train", lambda config, **_: seen.setdefault("train", config))
    monkeypatch.setattr(
        "stadb_reid.commands.evaluate.evaluate_untrained",
        lambda config, **_: seen.setdefault("evaluate", config) and {"mAP_at_7": 12.345},
    )
    common = ["--dataset", "synthetic", "--data-root", str(tmp_path), "--ap-at", "7"]
    result = CliRunner().invoke(app, ["train", *common, "--no-progress"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["evaluate", "--untrained", *common, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert seen["train"].eval.ap_at == 7 and seen["evaluate"].eval.ap_at == 7
    assert '"mAP_at_7": 12.35' in result.output
    seen.clear()
    result = CliRunner().invoke(app, ["evaluate", "--untrained", *common[:-1], "-1"])
    assert result.exit_code == 2 and not seen  # a usage error, before any evaluation
