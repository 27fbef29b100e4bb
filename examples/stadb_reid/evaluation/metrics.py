r"""The result of a ranking evaluation: CMC curve, mAP and mINP, per query and overall.

:class:`RankMetrics` holds fractions in ``[0, 1]``; :meth:`RankMetrics.summary` is the one scalar
summary, in percent, that training logs, ``stadb-reid evaluate`` and the result files report.

With ``ap_at = N > 0`` the summary also carries ``mAP_at_N`` (printed ``mAP@N``), the mean of the AP
truncated at rank ``N`` as the STADB authors' evaluator computes it:
:math:`\mathrm{AP@N} = \frac{1}{P}\sum_{k:\, r_k \le N} k / r_k`, hits beyond rank ``N`` dropped but the
denominator still every one of the ``P`` correct matches. It never exceeds the full AP, which ``mAP``
keeps reporting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from stadb_layers.checks import check_in_interval

from ._inputs import FloatArray

__all__ = ["SUMMARY_RANKS", "EvaluationProtocol", "RankMetrics", "format_truncated_ap", "truncated_ap_key"]

EvaluationProtocol = Literal["market1501", "cuhk03"]
"""Evaluation protocol: Market-1501 (all gallery images) or CUHK03 single-gallery-shot CMC."""

SUMMARY_RANKS = (1, 5, 10)
"""CMC ranks reported by :meth:`RankMetrics.summary`."""

_TRUNCATED_AP_KEY = re.compile(r"mAP_at_(\d+)")


def truncated_ap_key(n: int) -> str:
    """The summary key of the mAP truncated at rank ``n``: ``mAP_at_{n}`` (a valid identifier).

    Examples:
        >>> truncated_ap_key(50)
        'mAP_at_50'
    """
    return f"mAP_at_{n}"


def format_truncated_ap(metrics: Mapping[str, object]) -> str:
    """The truncated mAPs of a summary as ``"  mAP@N x.x%"`` (empty without any), to append to a line.

    Examples:
        >>> format_truncated_ap({"mAP": 80.0, "mAP_at_50": 79.04})
        '  mAP@50 79.0%'
        >>> format_truncated_ap({"mAP": 80.0})
        ''
    """
    parts = []
    for key, value in metrics.items():
        match = _TRUNCATED_AP_KEY.fullmatch(key)
        if match and isinstance(value, int | float):
            parts.append(f"  mAP@{match.group(1)} {value:.1f}%")
    return "".join(parts)


@dataclass(frozen=True)
class RankMetrics:
    """Retrieval metrics of one evaluation.

    Attributes:
        cmc: ``(max_rank,)`` float32 CMC curve in fractions: ``cmc[n - 1]`` is the rank-``n`` accuracy.
        mean_ap: Mean average precision (mAP) over the valid queries, a fraction in ``[0, 1]``.
        mean_inp: Mean inverse negative penalty (mINP) over the valid queries.
        num_valid_queries: Queries with at least one correct match in another camera.
        num_queries: All queries, valid or not.
        average_precision: ``(num_queries,)`` float64 AP of every query; NaN for invalid queries.
        inverse_negative_penalty: ``(num_queries,)`` float64 INP of every query; NaN for invalid ones.
        protocol: The protocol the CMC follows, ``"market1501"`` or ``"cuhk03"``.
        ap_at: Rank at which :attr:`mean_ap_at` truncates the AP; 0 when it was not computed.
        mean_ap_at: Mean AP truncated at rank ``ap_at`` (see the module docstring); ``None`` if
            ``ap_at`` is 0.
        average_precision_at: ``(num_queries,)`` truncated AP of every query (NaN for invalid ones);
            ``None`` if ``ap_at`` is 0.

    Examples:
        >>> import numpy as np
        >>> m = RankMetrics(np.array([0.5, 1.0], np.float32), 0.75, 0.5, 2, 2, np.ones(2), np.ones(2))
        >>> m.rank(1), m.summary()["rank10"]
        (0.5, 100.0)
    """

    cmc: npt.NDArray[np.float32]
    mean_ap: float
    mean_inp: float
    num_valid_queries: int
    num_queries: int
    average_precision: FloatArray = field(repr=False)
    inverse_negative_penalty: FloatArray = field(repr=False)
    protocol: EvaluationProtocol = "market1501"
    ap_at: int = 0
    mean_ap_at: float | None = None
    average_precision_at: FloatArray | None = field(default=None, repr=False)

    def rank(self, n: int) -> float:
        """Rank-``n`` accuracy (``cmc[n - 1]``) as a Python float.

        Args:
            n: 1-based rank, at most ``len(cmc)``.

        Returns:
            The fraction of valid queries whose first correct match is within the top ``n``.

        Raises:
            ValueError: If ``n`` is outside ``[1, len(cmc)]``.
        """
        check_in_interval(n, "n", 1, len(self.cmc), low_closed=True, high_closed=True)
        return float(self.cmc[n - 1])

    def summary(self) -> dict[str, float]:
        """Rank-1/5/10, mAP and mINP in percent, keyed ``rank1``, ``rank5``, ``rank10``, ``mAP``, ``mINP``.

        With ``ap_at = N > 0``, the truncated mAP follows, keyed ``mAP_at_N``.

        A gallery shorter than ``n`` images has a CMC shorter than ``n``; ``rank{n}`` is then its last
        entry (100% of the valid queries are found within the whole gallery).

        Returns:
            The five (or six) numbers, each in ``[0, 100]``, in that order.

        Examples:
            >>> import numpy as np
            >>> m = RankMetrics(np.array([0.5, 1.0], np.float32), 0.75, 0.5, 2, 2, np.ones(2), np.ones(2))
            >>> m.summary()
            {'rank1': 50.0, 'rank5': 100.0, 'rank10': 100.0, 'mAP': 75.0, 'mINP': 50.0}
        """
        out = {f"rank{n}": 100 * self.rank(min(n, len(self.cmc))) for n in SUMMARY_RANKS}
        out.update({"mAP": 100 * self.mean_ap, "mINP": 100 * self.mean_inp})
        if self.mean_ap_at is not None:
            out[truncated_ap_key(self.ap_at)] = 100 * self.mean_ap_at
        return out
