r"""Summaries over seeds: mean and standard deviation per setting, paired differences with a t-interval.

For settings ``a`` and ``b`` run at the same seeds (the same seed gives the same data order and
initialisation), the per-seed differences :math:`d_i = m_a(s_i) - m_b(s_i)` have mean :math:`\bar d`
and sample standard deviation :math:`s_d`; the 95 % confidence interval of the mean difference is
:math:`\bar d \pm t_{0.975,\,n-1}\, s_d / \sqrt{n}` (Student's t, :math:`n` seeds). It needs at least
two seeds; an interval that excludes 0 is a difference the seeds resolve.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev

from scipy import stats as scipy_stats

__all__ = ["METRICS", "PairedDifference", "comparisons", "paired_difference", "summarise"]

#: The metrics a sweep summarises, in report order (percent).
METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def summarise(per_seed: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Mean and sample standard deviation (``None`` for one seed) of each metric over seeds.

    Examples:
        >>> summary = summarise({0: {"rank1": 10.0}, 1: {"rank1": 14.0}})
        >>> summary["mean"]["rank1"], summary["std"]["rank1"]
        (12.0, 2.8284271247461903)
    """
    metrics = [m for m in METRICS if all(m in values for values in per_seed.values())]
    columns = {m: [per_seed[seed][m] for seed in sorted(per_seed)] for m in metrics}
    return {
        "mean": {m: fmean(v) for m, v in columns.items()},
        "std": {m: stdev(v) if len(v) > 1 else None for m, v in columns.items()},
    }


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` of one metric over the seeds both settings ran."""

    a: str
    b: str
    metric: str
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    std: float | None
    ci95: tuple[float, float] | None

    @property
    def resolved(self) -> bool:
        """Whether the 95 % interval excludes zero."""
        return self.ci95 is not None and (self.ci95[0] > 0 or self.ci95[1] < 0)


def paired_difference(
    a: str, b: str, metric: str, values_a: Mapping[int, float], values_b: Mapping[int, float]
) -> PairedDifference:
    """The mean of ``values_a[s] - values_b[s]`` over common seeds ``s``, with its 95 % t-interval.

    Raises:
        ValueError: The two settings share no seed.

    Examples:
        >>> d = paired_difference("x", "y", "rank1", {0: 5.0, 1: 7.0, 2: 6.0}, {0: 4.0, 1: 5.0, 2: 3.0})
        >>> d.mean, [round(bound, 3) for bound in d.ci95]
        (2.0, [-0.484, 4.484])
    """
    seeds = tuple(sorted(set(values_a) & set(values_b)))
    if not seeds:
        raise ValueError(f"{a} and {b} share no seed, so they cannot be paired")
    differences = tuple(values_a[s] - values_b[s] for s in seeds)
    mean = fmean(differences)
    if len(seeds) < 2:
        return PairedDifference(a, b, metric, seeds, differences, mean, None, None)
    std = stdev(differences)
    half_width = float(scipy_stats.t.ppf(0.975, len(seeds) - 1)) * std / math.sqrt(len(seeds))
    return PairedDifference(
        a, b, metric, seeds, differences, mean, std, (mean - half_width, mean + half_width)
    )


def comparisons(
    pairs: Sequence[tuple[str, str]], per_setting: Mapping[str, Mapping[int, Mapping[str, float]]]
) -> list[PairedDifference]:
    """Paired differences of every metric for each pair whose settings both have results."""
    found = []
    for a, b in pairs:
        if per_setting.get(a) and per_setting.get(b):
            for metric in METRICS:
                values_a = {s: m[metric] for s, m in per_setting[a].items() if metric in m}
                values_b = {s: m[metric] for s, m in per_setting[b].items() if metric in m}
                if set(values_a) & set(values_b):
                    found.append(paired_difference(a, b, metric, values_a, values_b))
    return found
