"""Tests of k_reciprocal_rerank_features, the trainer's one re-ranking implementation.

The witness is an independent, straightforward transcription of the paper's steps with sets, Python
loops and dense float64 matrices (:func:`reference_rerank`). Integer features on a small grid make every
distance exact in float32 and produce many ties (duplicate features), so the tie rule is exercised;
real-valued features agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_reid.config import Config
from stadb_reid.engine.evaluate import rank_test_sets
from stadb_reid.evaluation import k_reciprocal_rerank_features, pairwise_distance, rank_metrics
from stadb_reid.evaluation.features import Embeddings


def reference_rerank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """The paper's steps, transcribed with sets, Python loops and the dense (N, N) float64 pool matrix."""
    nq, ng = q_g.shape
    n = nq + ng
    d = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    row_max = d.max(1)
    d = d / np.where(row_max > 0, row_max, 1.0)[:, None]
    rank = np.argsort(d, axis=1, kind="stable")  # ties by pool index, probes first

    def reciprocal(i, k):
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for j in r:
            rj = reciprocal(j, round(k1 / 2))
            if 3 * len(set(rj) & set(r)) > 2 * len(rj):
                expanded |= set(rj)
        cols = sorted(expanded)
        w = np.exp(-d[i, cols])
        v[i, cols] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.ones((nq, ng))
    for p in range(nq):
        for j in range(ng):
            low, high = np.minimum(v[p], v[nq + j]).sum(), np.maximum(v[p], v[nq + j]).sum()
            jaccard[p, j] = 1.0 - low / high if high > 0 else 1.0  # both sets empty: distance 1
    return (1 - lam) * jaccard + lam * d[:nq, nq:]


def dense_reference(q, g, k1, k2, lam):
    """:func:`reference_rerank` of the exact (float64) squared Euclidean distances of the features."""
    x = np.concatenate([q, g]).astype(np.float64)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    nq = len(q)
    return reference_rerank(d[:nq, nq:], d[:nq, :nq], d[nq:, nq:], k1, k2, lam)


def matrix_reference(q, g, metric="sqeuclidean", **kwargs):
    """:func:`reference_rerank` of the float32 distances that ``pairwise_distance`` computes."""
    q_g, q_q, g_g = (pairwise_distance(a, b, metric).numpy() for a, b in ((q, g), (q, q), (g, g)))
    return reference_rerank(q_g, q_q, g_g, **kwargs)


def grid_features(draw, rows, dim):
    values = st.lists(st.integers(-2, 2), min_size=dim, max_size=dim)
    return np.array(draw(st.lists(values, min_size=rows, max_size=rows)), dtype=np.float32).reshape(rows, dim)


@st.composite
def problems(draw):
    dim = draw(st.integers(1, 3))
    q = grid_features(draw, draw(st.integers(1, 5)), dim)
    g = grid_features(draw, draw(st.integers(1, 12)), dim)
    lam = draw(st.sampled_from([0.0, 0.3, 1.0]) | st.floats(0.0, 1.0))
    return q, g, draw(st.integers(1, 8)), draw(st.integers(1, 6)), lam, draw(st.integers(1, 7))


@settings(max_examples=60, deadline=None)
@given(problems())
def test_equals_the_dense_reference_with_ties(problem):
    q, g, k1, k2, lam, chunk = problem
    out = k_reciprocal_rerank_features(q, g, k1, k2, lam, chunk_size=chunk)
    assert out.shape == (len(q), len(g)) and out.dtype == np.float32
    np.testing.assert_allclose(out, dense_reference(q, g, k1, k2, lam), rtol=0, atol=2e-6)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(2, 40),
    st.integers(1, 12),
    st.integers(1, 7),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31),
)
def test_real_valued_features_agree_to_float_rounding(nq, ng, k1, k2, lam, seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(nq, 6)), rng.normal(size=(ng, 6))
    out = k_reciprocal_rerank_features(q, g, k1, k2, lam, chunk_size=8)
    np.testing.assert_allclose(out, dense_reference(q, g, k1, k2, lam), rtol=0, atol=1e-5)


def pool_features(seed, nq, ng, dim, integer):
    x = np.random.default_rng(seed).normal(size=(nq + ng, dim))
    if integer:
        x = np.round(x)  # duplicate points: tied neighbours
    return x[:nq], x[nq:]


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nq=st.integers(1, 8),
    ng=st.integers(1, 24),
    dim=st.integers(1, 5),
    integer=st.booleans(),
    k1=st.integers(1, 25),
    k2=st.integers(1, 7),
    lam=st.floats(0.0, 1.0),
)
def test_matches_the_reference_on_its_own_distances(seed, nq, ng, dim, integer, k1, k2, lam):
    q, g = pool_features(seed, nq, ng, dim, integer)
    out = k_reciprocal_rerank_features(q, g, k1=k1, k2=k2, lambda_value=lam)
    expected = matrix_reference(q, g, k1=k1, k2=k2, lam=lam)
    assert out.shape == (nq, ng) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_properties_and_defaults():
    q, g = pool_features(0, 10, 50, 8, False)
    out = k_reciprocal_rerank_features(q, g)  # paper defaults k1=20, k2=6, lambda=0.3
    assert out.shape == (10, 50) and np.isfinite(out).all()
    np.testing.assert_allclose(out, matrix_reference(q, g), rtol=1e-6, atol=1e-6)
    # lambda = 1: the original distances, divided by the row maximum over probes and gallery.
    q_g, q_q = (pairwise_distance(q, b, "sqeuclidean").numpy() for b in (g, q))
    scale = np.maximum(q_q.max(1), q_g.max(1))[:, None]
    np.testing.assert_allclose(k_reciprocal_rerank_features(q, g, lambda_value=1.0), q_g / scale, rtol=1e-6)
    # lambda = 0: the Jaccard distance, in [0, 1].
    jac = k_reciprocal_rerank_features(q, g, lambda_value=0.0)
    assert jac.min() >= 0.0 and jac.max() <= 1.0 + 1e-6
    # Tensors are accepted and scaling all distances does not change the result.
    as_tensors = k_reciprocal_rerank_features(torch.from_numpy(q * 7), torch.from_numpy(g * 7))
    np.testing.assert_allclose(as_tensors, out, rtol=1e-5, atol=1e-6)


def identity_features(nq=30, ng=240, dim=32, ids=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    q = centres[q_pids] + 0.7 * rng.normal(size=(nq, dim))
    g = centres[g_pids] + 0.7 * rng.normal(size=(ng, dim))
    return q.astype(np.float32), g.astype(np.float32), q_pids, g_pids


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_metrics_and_tiling_match_the_reference(metric):
    q, g, _, _ = identity_features()
    ref = matrix_reference(q, g, metric)
    for chunk in (40, 4096):
        out = k_reciprocal_rerank_features(q, g, metric=metric, chunk_size=chunk)
        # euclidean: sqrt amplifies the rounding of near-zero self distances
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5 if metric == "euclidean" else 1e-6)


def test_duplicated_gallery_breaks_ties_by_index():
    q, g, _, _ = identity_features(nq=6, ng=40, dim=8)
    g = np.repeat(g, 3, axis=0)  # every gallery sample three times: tied distances everywhere
    q = np.concatenate([q, g[:5]])
    np.testing.assert_allclose(
        k_reciprocal_rerank_features(q, g, chunk_size=7), matrix_reference(q, g), atol=1e-6
    )


def test_input_types_give_the_same_result(capsys):
    q, g, _, _ = identity_features(nq=5, ng=50, dim=8)
    ref = k_reciprocal_rerank_features(q, g)
    np.testing.assert_array_equal(k_reciprocal_rerank_features(torch.from_numpy(q), torch.from_numpy(g)), ref)
    np.testing.assert_allclose(k_reciprocal_rerank_features(q.astype(np.float64), g.tolist()), ref, atol=0)
    np.testing.assert_array_equal(k_reciprocal_rerank_features(q, g, progress=True), ref)
    assert "re-rank" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    q, g, _, _ = identity_features()
    cpu = k_reciprocal_rerank_features(q, g, chunk_size=64)
    cuda = k_reciprocal_rerank_features(torch.from_numpy(q).cuda(), torch.from_numpy(g).cuda(), chunk_size=64)
    np.testing.assert_allclose(cuda, cpu, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k1": 0}, "k1"),
        ({"k2": 0}, "k2"),
        ({"k2": 1.5}, "k2 must be a positive integer"),
        ({"lambda_value": 1.5}, "lambda_value"),
        ({"metric": "manhattan"}, "metric"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    q, g, _, _ = identity_features(nq=3, ng=10, dim=4)
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank_features(q, g, **kwargs)


@pytest.mark.parametrize(
    ("q", "g", "message"),
    [
        (np.zeros((2, 3)), np.zeros((4, 2)), "same dimension"),
        (np.zeros((0, 3)), np.zeros((4, 3)), "empty"),
        (np.zeros(3), np.zeros((4, 3)), "query_features"),
        (np.zeros((2, 3)), np.full((4, 3), np.nan), "gallery_features must be finite"),
    ],
)
def test_bad_features_are_named(q, g, message):
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank_features(q, g)


def test_rank_test_sets_reranks_from_features():
    q, g, q_pids, g_pids = identity_features()
    rng = np.random.default_rng(1)
    q_cams, g_cams = rng.integers(0, 3, len(q)), rng.integers(0, 3, len(g))
    config = Config()
    config.eval.rerank = True
    query = Embeddings(torch.from_numpy(q), q_pids, q_cams)
    gallery = Embeddings(torch.from_numpy(g), g_pids, g_cams)
    metrics, distances = rank_test_sets(query, gallery, config)
    assert distances is not None
    np.testing.assert_array_equal(distances, k_reciprocal_rerank_features(q, g, metric="sqeuclidean"))
    np.testing.assert_allclose(distances, matrix_reference(q, g), atol=1e-6)
    expected = rank_metrics(distances, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    assert metrics.mean_ap == expected.mean_ap and np.array_equal(metrics.cmc, expected.cmc)
