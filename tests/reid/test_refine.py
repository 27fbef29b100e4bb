"""The row gathering of the ANN shortlist's exact re-scoring (query.gather_rows)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadb_reid.search.query import gather_rows


def split(rows: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(rows, np.cumsum(sizes)[:-1])


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
