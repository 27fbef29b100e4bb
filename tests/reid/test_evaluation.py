"""Tests of stadb_reid.evaluation: exactness against independent per-query implementations."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stadb_reid.evaluation import (
    RankMetrics,
    evaluate_from_features,
    evaluate_rank,
    extract_features,
    pairwise_distance,
    rank_metrics,
)
from stadb_reid.evaluation.features import Embeddings

# --------------------------------------------------------------------------- independent references


def reference_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query loop: filter junk, then CMC, AP (mean precision at each hit) and INP.

    Same conventions as the documented numerics: stable sort, AP summed left to right in float64,
    means by math.fsum.
    """
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1, kind="stable")
    firsts, aps, inps = [], [], []
    per_query_ap = np.full(num_q, np.nan)
    for i in range(num_q):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = g_pids[order][keep] == q_pids[i]
        if not matches.any():
            continue
        hits = [int(r) + 1 for r in np.flatnonzero(matches)]  # 1-based ranks
        total = 0.0
        for k, rank in enumerate(hits, start=1):
            total += k / rank
        aps.append(total / len(hits))
        inps.append(len(hits) / hits[-1])
        firsts.append(hits[0])
        per_query_ap[i] = aps[-1]
    n = len(aps)
    if n == 0:
        return None
    cmc = np.array([sum(f <= k for f in firsts) for k in range(1, max_rank + 1)], dtype=np.float32)
    return {
        "cmc": cmc / np.float32(n),
        "mean_ap": math.fsum(aps) / n,
        "mean_inp": math.fsum(inps) / n,
        "ap": per_query_ap,
        "num_valid": n,
    }


def reference_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, num_repeats, seed):
    """torchreid's eval_cuhk03 loop (mask of one sampled image per identity), with documented draws."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    rng = np.random.default_rng(seed)
    identities = np.unique(g_pids)
    indices = np.argsort(distmat, axis=1, kind="stable")
    found = np.zeros(max_rank, dtype=np.int64)
    n = 0
    for i in range(num_q):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        kept_pids = g_pids[order][keep]
        matches = kept_pids == q_pids[i]
        if not matches.any():
            continue
        n += 1
        u = rng.random((num_repeats, len(identities)))
        for r in range(num_repeats):
            mask = np.zeros(len(kept_pids), dtype=bool)
            for h, pid in enumerate(identities):
                where = np.flatnonzero(kept_pids == pid)
                if len(where):
                    mask[where[min(int(u[r, h] * len(where)), len(where) - 1)]] = True
            sampled = matches[mask]
            assert sampled.sum() == 1
            first = int(np.argmax(sampled)) + 1
            found[first - 1 :] += 1
    return (found / (num_repeats * n)).astype(np.float32)


def torchreid_python_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """torchreid.metrics.rank.eval_market1501 as published (quicksort, numpy pairwise sums)."""
    num_q, _ = distmat.shape
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = np.asarray([x / (i + 1.0) for i, x in enumerate(tmp_cmc)]) * raw_cmc
        all_ap.append(tmp_cmc.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_cmc), float(np.mean(all_ap))


# --------------------------------------------------------------------------- problem generators


def make_problem(seed, num_q, num_g, num_ids, num_cams, kind):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    distmat: np.ndarray
    if kind == "ties":  # few distinct values: many ties, including across positives and junk
        distmat = rng.integers(0, 4, (num_q, num_g)).astype(np.float32)
    elif kind == "float64":
        distmat = rng.random((num_q, num_g)) * 10.0
        distmat[rng.random((num_q, num_g)) < 0.2] = 1.0  # exact ties
        distmat[rng.random((num_q, num_g)) < 0.05] = np.inf
    elif kind == "int":
        distmat = rng.integers(-3, 3, (num_q, num_g))
    else:
        distmat = rng.random((num_q, num_g)).astype(np.float32)
        distmat[rng.random((num_q, num_g)) < 0.1] = -0.0  # -0.0 ties with 0.0
        distmat[rng.random((num_q, num_g)) < 0.1] = 0.0
    return distmat, q_pids, g_pids, q_camids, g_camids


problems = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(1, 14),  # queries
    st.integers(1, 40),  # gallery
    st.integers(1, 6),  # identities
    st.integers(1, 3),  # cameras
    st.sampled_from(["ties", "float32", "float64", "int"]),
)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- rank metrics


@settings(max_examples=250, deadline=None)
@given(
    problem=problems,
    max_rank=st.integers(1, 50),
    chunk_size=st.integers(1, 6),
    workers=st.sampled_from([1, 2]),
)
def test_market1501_exact_against_per_query_reference(problem, max_rank, chunk_size, workers):
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(*problem)
    ref = reference_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    if ref is None:
        with pytest.raises(ValueError, match="no query has a valid match"):
            quiet(rank_metrics, distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
        return
    m = quiet(
        rank_metrics,
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank,
        chunk_size=chunk_size,
        num_workers=workers,
    )
    assert m.cmc.dtype == np.float32
    assert np.array_equal(m.cmc, ref["cmc"])
    assert m.mean_ap == ref["mean_ap"]
    assert m.mean_inp == ref["mean_inp"]
    assert np.array_equal(m.average_precision, ref["ap"], equal_nan=True)
    assert m.num_valid_queries == ref["num_valid"]
    cmc, mean_ap = quiet(evaluate_rank, distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    assert np.array_equal(cmc, ref["cmc"]) and mean_ap == ref["mean_ap"]


@settings(max_examples=60, deadline=None)
@given(
    problem=problems,
    max_rank=st.integers(1, 20),
    chunk_size=st.integers(1, 5),
    repeats=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_cuhk03_exact_against_mask_reference(problem, max_rank, chunk_size, repeats, seed):
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(*problem)
    ref = reference_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    if ref is None:
        return
    m = quiet(
        rank_metrics,
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank,
        protocol="cuhk03",
        num_repeats=repeats,
        seed=seed,
        chunk_size=chunk_size,
    )
    expected_cmc = reference_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, repeats, seed)
    assert np.array_equal(m.cmc, expected_cmc)
    # AP and INP are the Market-1501 ones.
    assert m.mean_ap == ref["mean_ap"] and m.mean_inp == ref["mean_inp"]


def test_cuhk03_default_is_ten_seeded_repeats_and_reproducible():
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(3, 12, 40, 5, 3, "float32")
    a = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, 20, protocol="cuhk03")
    b = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, 20, use_metric_cuhk03=True)
    expected = reference_cuhk03(distmat, q_pids, g_pids, q_camids, g_camids, 20, 10, 0)
    assert np.array_equal(a.cmc, expected) and np.array_equal(b[0], expected)
    assert b[1] == a.mean_ap
    # One image per identity and 5 identities: every query is found by rank 5; 10 draws x 12 queries.
    assert np.all(a.cmc[4:] == 1.0) and np.all(np.diff(a.cmc) >= 0)
    assert np.allclose(a.cmc * 120, np.round(a.cmc * 120), atol=1e-4)


def test_hand_worked_example():
    # Query 0 (pid 1, cam 0): ranking g0 (hit), g2, g1; g3 is junk (pid 1, cam 0) and removed.
    # Query 1 (pid 2, cam 0): ranking g3, g1 (hit), g0, g2.  Query 2 (pid 9): no match, skipped.
    distmat = np.array([[0.1, 0.5, 0.2, 0.05], [0.4, 0.3, 0.8, 0.1], [0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    m = rank_metrics(distmat, [1, 2, 9], [1, 2, 3, 1], [0, 0, 0], [1, 1, 1, 0], max_rank=4)
    assert m.cmc.tolist() == [0.5, 1.0, 1.0, 1.0]
    assert m.mean_ap == 0.75 and m.mean_inp == 0.75
    assert m.num_valid_queries == 2 and m.num_queries == 3
    assert m.average_precision[:2].tolist() == [1.0, 0.5] and math.isnan(m.average_precision[2])
    assert m.summary() == {"rank1": 50.0, "rank5": 100.0, "rank10": 100.0, "mAP": 75.0, "mINP": 75.0}
    assert m.rank(2) == 1.0
    with pytest.raises(ValueError, match=r"n must lie in \[1, 4\]"):
        m.rank(5)


def test_summary_is_percent_with_rank_n_clipped_to_the_cmc():
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(3, 10, 60, 4, 2, "float32")
    m = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=7)
    assert list(m.summary()) == ["rank1", "rank5", "rank10", "mAP", "mINP"]
    expected = [100 * m.rank(1), 100 * m.rank(5), 100 * m.rank(7), 100 * m.mean_ap, 100 * m.mean_inp]
    assert list(m.summary().values()) == expected


def test_ap_inp_with_several_hits():
    # Hits at ranks 1, 3 and 6 among 6 kept entries: AP = (1/1 + 2/3 + 3/6) / 3, INP = 3/6.
    g_pids = np.array([7, 0, 7, 0, 0, 7])
    distmat = np.arange(6, dtype=np.float32)[None]
    m = rank_metrics(distmat, [7], g_pids, [0], [1] * 6, max_rank=6)
    assert m.mean_ap == (1.0 + 2.0 / 3.0 + 0.5) / 3.0
    assert m.mean_inp == 0.5
    assert m.cmc.tolist() == [1.0] * 6


def test_ties_are_broken_by_gallery_index():
    # All distances equal: the stable order is the gallery order, so the hit (index 2) is at rank 3,
    # after the junk entry (index 1, same pid and camera) is removed it is at rank 2.
    distmat = np.zeros((1, 4), dtype=np.float32)
    m = rank_metrics(distmat, [5], [0, 5, 5, 1], [0], [0, 0, 1, 0], max_rank=3)
    assert m.cmc.tolist() == [0.0, 1.0, 1.0]
    assert m.mean_ap == 0.5


def test_agrees_with_published_torchreid_algorithm_without_ties():
    rng = np.random.default_rng(0)
    distmat = rng.random((60, 300)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 30, 60), rng.integers(0, 30, 300)
    q_camids, g_camids = rng.integers(0, 4, 60), rng.integers(0, 4, 300)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, 50)
    cmc_tr, mean_ap_tr = torchreid_python_eval(distmat, q_pids, g_pids, q_camids, g_camids, 50)
    assert np.array_equal(cmc, cmc_tr)
    assert mean_ap == pytest.approx(mean_ap_tr, rel=1e-13, abs=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64])
def test_tensor_inputs_equal_numpy_inputs(dtype):
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(11, 14, 40, 5, 3, "ties")
    t = torch.from_numpy(distmat).to(dtype)
    from_tensors = rank_metrics(
        t,
        torch.from_numpy(q_pids),
        torch.from_numpy(g_pids),
        torch.from_numpy(q_camids),
        g_camids.tolist(),
        10,
    )
    from_numpy = rank_metrics(t.float().numpy(), q_pids, g_pids, q_camids, g_camids, 10)
    assert np.array_equal(from_tensors.cmc, from_numpy.cmc)
    assert from_tensors.mean_ap == from_numpy.mean_ap and from_tensors.mean_inp == from_numpy.mean_inp


def test_evaluate_rank_return_types():
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(5, 10, 60, 4, 2, "float32")
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    cmc_tr, mean_ap_tr = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, 50, False, False)
    assert np.array_equal(cmc, cmc_tr) and mean_ap == mean_ap_tr  # torchreid's use_cython is accepted
    assert isinstance(cmc, np.ndarray) and cmc.dtype == np.float32 and cmc.shape == (50,)
    assert isinstance(mean_ap, float) and 0.0 <= mean_ap <= 1.0
    assert np.all(np.diff(cmc) >= 0)


def test_max_rank_larger_than_gallery_is_clipped_with_a_warning():
    distmat, q_pids, g_pids, q_camids, g_camids = make_problem(1, 5, 8, 3, 2, "float32")
    with pytest.warns(UserWarning, match="clipping it to 8"):
        m = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50)
    assert m.cmc.shape == (8,) and m.cmc[-1] == 1.0


def test_no_valid_query_raises():
    with pytest.raises(ValueError, match="no query has a valid match"):
        rank_metrics(np.zeros((2, 3)), [1, 2], [1, 2, 3], [0, 1], [0, 1, 0], max_rank=3)


Q3G4 = np.zeros((3, 4), dtype=np.float32)
LABELS: dict[str, Any] = {
    "q_pids": [0, 1, 2],
    "g_pids": [0, 1, 2, 0],
    "q_camids": [0, 0, 0],
    "g_camids": [1, 1, 1, 1],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"distmat": np.zeros(4)}, "distmat must be a 2-D"),
        ({"distmat": np.zeros((0, 4))}, "at least one query and one gallery"),
        ({"distmat": np.full((3, 4), np.nan)}, "distmat must not contain NaN"),
        ({"distmat": np.zeros((3, 4), dtype=bool)}, "distmat must hold real numbers"),
        ({"distmat": np.zeros((3, 4), dtype=complex)}, "distmat must hold real numbers"),
        ({"q_pids": [0, 1]}, r"q_pids must have one entry per query \(3\), got 2"),
        ({"g_pids": [0, 1, 2]}, r"g_pids must have one entry per gallery entry \(4\), got 3"),
        ({"q_camids": [[0, 0, 0]]}, "q_camids must be a 1-D array"),
        ({"g_camids": [0.0, 1.0, 1.0, 1.0]}, "g_camids must hold integers"),
        ({"max_rank": 0}, "max_rank must be a positive integer"),
        ({"max_rank": True}, "max_rank must be a positive integer"),
        ({"max_rank": 2.5}, "max_rank must be a positive integer"),
        ({"protocol": "duke"}, "protocol must be 'market1501' or 'cuhk03'"),
        ({"num_repeats": 0}, "num_repeats must be a positive integer"),
        ({"chunk_size": 0}, "chunk_size must be a positive integer"),
        ({"num_workers": 0}, "num_workers must be a positive integer"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(change, message):
    kwargs = {"distmat": Q3G4, **LABELS, "max_rank": 4, **change}
    with pytest.raises(ValueError, match=message):
        rank_metrics(**kwargs)


def test_numpy_integer_max_rank_is_accepted():
    m = rank_metrics(Q3G4, **LABELS, max_rank=np.int64(2))
    assert m.cmc.shape == (2,)


def test_rank_metrics_is_a_frozen_dataclass():
    m = rank_metrics(Q3G4, **LABELS, max_rank=2)
    assert isinstance(m, RankMetrics) and m.protocol == "market1501"
    with pytest.raises(AttributeError):
        m.mean_ap = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- distances and chunking


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_pairwise_distance_matches_brute_force(metric):
    torch.manual_seed(0)
    q, g = torch.randn(9, 5, dtype=torch.float64), torch.randn(13, 5, dtype=torch.float64)
    diff = q[:, None] - g[None]
    expected = {
        "euclidean": diff.norm(dim=2),
        "sqeuclidean": (diff**2).sum(2),
        "cosine": 1 - nn.functional.cosine_similarity(q[:, None], g[None], dim=2),
    }[metric]
    d = pairwise_distance(q, g, metric, chunk_size=4)
    assert d.dtype == torch.float32 and d.shape == (9, 13)
    torch.testing.assert_close(d.double(), expected, rtol=1e-5, atol=1e-5)


def test_pairwise_distance_is_exact_and_chunk_independent_on_integer_features():
    rng = np.random.default_rng(0)
    q, g = rng.integers(-3, 4, (37, 6)), rng.integers(-3, 4, (53, 6))
    expected = ((q[:, None] - g[None]) ** 2).sum(2)
    for chunk in (1, 5, 37, 512):
        d = pairwise_distance(q, g, "sqeuclidean", chunk_size=chunk)
        assert np.array_equal(d.numpy(), expected.astype(np.float32))


@settings(max_examples=25, deadline=None)
@given(
    problem=problems,
    metric=st.sampled_from(["euclidean", "sqeuclidean", "cosine"]),
    chunk_size=st.integers(1, 16),
    protocol=st.sampled_from(["market1501", "cuhk03"]),
    dim=st.integers(1, 8),
)
def test_chunked_features_path_equals_full_matrix(problem, metric, chunk_size, protocol, dim):
    seed, num_q, num_g = problem[:3]
    _, q_pids, g_pids, q_camids, g_camids = make_problem(*problem)
    rng = np.random.default_rng(seed)
    q = torch.from_numpy(rng.integers(-2, 3, (num_q, dim)).astype(np.float32))  # integer: many ties
    g = torch.from_numpy(rng.normal(size=(num_g, dim)).astype(np.float32))
    g[: num_g // 2] = g[: num_g // 2].round()
    full = pairwise_distance(q, g, metric, chunk_size=chunk_size)
    ref = reference_market(full.numpy(), q_pids, g_pids, q_camids, g_camids, 10)
    kwargs = {"max_rank": 10, "protocol": protocol}
    if ref is None:
        with pytest.raises(ValueError, match="no query has a valid match"):
            quiet(evaluate_from_features, q, g, q_pids, g_pids, q_camids, g_camids, metric=metric, **kwargs)
        return
    a = quiet(
        evaluate_from_features,
        q,
        g,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        metric=metric,
        chunk_size=chunk_size,
        **kwargs,
    )
    b = quiet(rank_metrics, full, q_pids, g_pids, q_camids, g_camids, **kwargs)
    assert np.array_equal(a.cmc, b.cmc)
    assert a.mean_ap == b.mean_ap == ref["mean_ap"] and a.mean_inp == b.mean_inp == ref["mean_inp"]


def test_chunked_path_equals_full_matrix_with_default_chunks():
    torch.manual_seed(1)
    q, g = torch.randn(1100, 16), torch.randn(700, 16)
    q_pids, g_pids = torch.randint(0, 40, (1100,)), torch.randint(0, 40, (700,))
    q_camids, g_camids = torch.randint(0, 3, (1100,)), torch.randint(0, 3, (700,))
    for metric in ("euclidean", "cosine"):
        a = evaluate_from_features(q, g, q_pids, g_pids, q_camids, g_camids, metric=metric, progress=False)
        b = rank_metrics(pairwise_distance(q, g, metric), q_pids, g_pids, q_camids, g_camids)
        assert np.array_equal(a.cmc, b.cmc) and a.mean_ap == b.mean_ap and a.mean_inp == b.mean_inp


def test_feature_errors():
    q, g = torch.zeros(3, 4), torch.zeros(5, 4)
    with pytest.raises(ValueError, match="query_features must be a 2-D"):
        pairwise_distance(torch.zeros(3), g)
    with pytest.raises(ValueError, match="same dimension, got 4 and 2"):
        pairwise_distance(q, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="metric must be one of"):
        pairwise_distance(q, g, "manhattan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        pairwise_distance(q, g, chunk_size=0)
    with pytest.raises(ValueError, match="g_pids must have one entry per gallery entry"):
        evaluate_from_features(q, g, [0, 1, 2], [0, 1], [0, 0, 0], [1] * 5)


# --------------------------------------------------------------------------- features


class TinyEmbedder(nn.Module):
    """Not flip-invariant: the embedding depends on the column order of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=(1, 3))
        self.bn = nn.BatchNorm1d(4 * 4 * 2)
        self.fc = nn.Linear(4 * 4 * 2, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x).flatten(1)))


def test_extract_features_with_and_without_flip():
    torch.manual_seed(0)
    model = TinyEmbedder()
    assert model.bn.running_mean is not None
    model.bn.running_mean.uniform_(-1, 1)
    images = [torch.randn(3, 3, 4, 4), torch.randn(2, 3, 4, 4)]
    loader = [(images[0], torch.tensor([1, 2, 3]), [0, 1, 2], "extra"), (images[1], [4, 5], [0, 0], "x")]
    model.train()
    plain, pids, camids = extract_features(model, loader, "cpu")
    assert model.training  # mode restored
    flipped, _, _ = extract_features(model, loader, torch.device("cpu"), flip=True, progress=False)
    model.eval()
    with torch.no_grad():
        x = torch.cat(images)
        expected_plain = model(x)
        expected_flip = (model(x) + model(x.flip(3))) / 2
    torch.testing.assert_close(plain, expected_plain)
    torch.testing.assert_close(flipped, expected_flip)
    assert not torch.allclose(plain, flipped)
    assert pids.tolist() == [1, 2, 3, 4, 5] and camids.tolist() == [0, 1, 2, 0, 0]
    assert pids.dtype == np.int64 and plain.dtype == torch.float32 and not plain.is_inference()


def test_extract_features_from_dict_batches_and_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    batch = {"img": torch.randn(2, 3, 2, 2), "pid": torch.tensor([7, 8]), "camid": torch.tensor([1, 2])}
    embedded = extract_features(model, [batch])
    feats, pids, camids = embedded
    assert isinstance(embedded, Embeddings) and embedded.features is feats and embedded.camids is camids
    assert feats.shape == (2, 3) and pids.tolist() == [7, 8] and camids.tolist() == [1, 2]
    with pytest.raises(ValueError, match="no batch"):
        extract_features(model, [])
    with pytest.raises(ValueError, match="2 images but 1 pids"):
        extract_features(model, [(torch.randn(2, 3, 2, 2), [1], [0, 0])])
    with pytest.raises(TypeError, match="tuple/list"):
        extract_features(model, [torch.randn(2, 3, 2, 2)])
    with pytest.raises(KeyError, match="camids"):
        extract_features(model, [{"images": torch.randn(2, 3, 2, 2), "pids": [1, 2]}])
    with pytest.raises(ValueError, match=r"\(N, D\) embedding"):
        extract_features(nn.Identity(), [(torch.randn(2, 3, 2, 2), [1, 2], [0, 0])])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=12),
)
def test_has_match_in_other_camera_is_the_ranking_rule(
    queries: list[tuple[int, int]], gallery: list[tuple[int, int]]
) -> None:
    from stadb_reid.evaluation.queries import has_match_in_other_camera

    q_pids, q_camids = (np.array([q[i] for q in queries]) for i in (0, 1))
    g_pids, g_camids = (np.array([g[i] for g in gallery], dtype=np.int64) for i in (0, 1))
    expected = [any(gp == qp and gc != qc for gp, gc in gallery) for qp, qc in queries]
    assert has_match_in_other_camera(q_pids, q_camids, g_pids, g_camids).tolist() == expected
