"""The ANN shortlist's exact re-scoring (shards.refine) and the row gathering it uses (query.gather_rows).

The property test uses small integer-valued embeddings: every dot product and squared norm is then
exact in float32, so ``refine`` must equal the brute-force reference (exact search over each query's
own candidates, ties by row) bit for bit, whatever the summation order of either.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stadb_reid.search.exact import exact_search
from stadb_reid.search.query import gather_rows
from stadb_reid.search.shards import refine


def split(rows: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(rows, np.cumsum(sizes)[:-1])


def reference(queries, rows, candidates, k, metric):
    """Each query's valid candidates, searched exactly (sorted by row, so ties go to the lower row)."""
    top = min(k, int((candidates >= 0).sum(axis=1).min()))
    distances, found = [], []
    for query, proposed in zip(queries, candidates, strict=True):
        own = np.unique(proposed[proposed >= 0])
        if top == 0:
            distances.append(np.empty(0, np.float32))
            found.append(np.empty(0, np.int64))
            continue
        d, i = exact_search(query[None], rows[own], top, metric=metric)
        distances.append(d[0])
        found.append(own[i[0]])
    return np.array(distances, dtype=np.float32), np.array(found, dtype=np.int64)


@st.composite
def cases(draw):
    dim = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(0, 4), min_size=1, max_size=6).filter(lambda s: sum(s) > 0))
    values = st.integers(-2, 2)
    rows = draw(arrays(np.int8, (sum(sizes), dim), elements=values)).astype(np.float32) / 2
    queries = draw(arrays(np.int8, (draw(st.integers(1, 4)), dim), elements=values)).astype(np.float32)
    width = draw(st.integers(1, 8))
    candidates = np.full((len(queries), width), -1, dtype=np.int64)
    for i in range(len(queries)):  # a query's rows are distinct (shards hold disjoint rows); -1 anywhere
        own = draw(st.lists(st.integers(0, len(rows) - 1), max_size=width, unique=True))
        slots = draw(st.permutations(range(width)))[: len(own)]
        candidates[i, slots] = own
    return (
        rows,
        sizes,
        queries,
        candidates,
        draw(st.integers(1, 6)),
        draw(st.sampled_from(["euclidean", "cosine"])),
    )


@settings(deadline=None, max_examples=150)
@given(cases())
def test_refine_is_exact_search_over_the_candidates(case) -> None:
    rows, sizes, queries, candidates, k, metric = case
    distances, found = refine(queries, split(rows, sizes), candidates, k, metric=metric)
    expected_d, expected = reference(queries, rows, candidates, k, metric)
    assert found.tolist() == expected.tolist()
    np.testing.assert_array_equal(distances, expected_d)
    assert distances.dtype == np.float32 and found.dtype == np.int64


@settings(deadline=None, max_examples=100)
@given(st.data())
def test_gather_rows_any_order_and_repeats(data) -> None:
    sizes = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=7).filter(lambda s: sum(s) > 0))
    rows = np.arange(sum(sizes) * 3, dtype=np.float64).reshape(-1, 3)
    wanted = np.array(data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=12)), dtype=np.int64)
    for wanted_rows in (wanted, np.sort(wanted)):
        gathered = gather_rows(split(rows, sizes), wanted_rows)
        assert gathered.dtype == np.float32 and gathered.shape == (len(wanted_rows), 3)
        np.testing.assert_array_equal(gathered, rows[wanted_rows])


def test_gather_rows_refuses_rows_outside_the_gallery() -> None:
    chunks = [np.zeros((2, 3)), np.zeros((3, 3))]
    for bad in ([0, 5], [-1, 2]):
        with pytest.raises(IndexError, match=r"gallery rows must lie in \[0, 5\)"):
            gather_rows(chunks, np.array(bad))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_equal_rows_tie_wherever_they_sit_and_a_row_is_nearest_itself(metric, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3000, 1536), dtype=np.float32)
    rows[2500] = rows[7]  # the same vector in another chunk
    files = []
    for c, chunk in enumerate(split(rows, [1024, 1024, 952])):
        np.save(tmp_path / f"{c}.npy", chunk)
        files.append(np.load(tmp_path / f"{c}.npy", mmap_mode="r"))
    candidates = rng.integers(0, 3000, (40, 30))
    candidates[np.isin(candidates, [7, 2500])] = 8
    candidates[:, 17], candidates[:, 3] = 7, 2500
    candidates[20:, 3], candidates[20:, 29], candidates[20:, 17] = 7, 2500, -1
    distances, found = refine(rows[[7] * 40], files, candidates, 2, metric=metric)
    assert found.tolist() == [[7, 2500]] * 40
    assert np.all(distances == distances[0, 0])  # one value, bit for bit
    assert distances[0, 0] == 0.0 if metric == "euclidean" else distances[0, 0] < 1e-6


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_every_row_a_candidate_gives_exact_search(metric) -> None:
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((2000, 64), dtype=np.float32)
    queries = rng.standard_normal((25, 64), dtype=np.float32)
    candidates = np.stack([rng.permutation(2000) for _ in queries])  # each query its own order
    distances, found = refine(queries, split(rows, [700, 1, 0, 1299]), candidates, 10, metric=metric)
    expected_d, expected = exact_search(queries, rows, 10, metric=metric)
    assert found.tolist() == expected.tolist()
    np.testing.assert_allclose(distances, expected_d, atol=1e-5)


def test_no_valid_candidate_gives_empty_results() -> None:
    distances, found = refine(np.ones((2, 3), np.float32), [np.ones((4, 3))], np.full((2, 5), -1), 3)
    assert distances.shape == found.shape == (2, 0)
