"""The paper's figures beside a sweep's, for a sweep of one of the paper's tables (``paper_table<N>``).

Each row of Table N gets the figures the paper prints, the measured mean ± std over seeds, and the
difference (measured - paper). Other sweeps have no paper rows, and their reports no such section.

Examples:
    >>> settings = [{"name": "market1501-attention_se", "seeds": [0, 1],
    ...              "mean": {"mAP": 80.0, "rank1": 90.0}, "std": {"mAP": 1.0, "rank1": 0.5}}]
    >>> entry = paper_comparison("paper_table8", settings)[1]
    >>> entry["row"], entry["paper"]["mAP"], entry["difference"]["mAP"], entry["difference"]["rank5"]
    ('SENet', 86.4, -6.4, None)
    >>> print(markdown_paper_section(paper_comparison("paper_table8", settings)).splitlines()[8])
    | SENet | market1501 | 2 | 86.4 | 80.00 ± 1.00 | -6.40 | 94.8 | 90.00 ± 0.50 | -4.80 | 98.0 | - | - |
"""

from collections.abc import Sequence
from typing import Any

from ...paper import paper_rows

__all__ = ["PAPER_METRICS", "markdown_paper_section", "paper_comparison"]

#: The metrics the paper's tables print, in report order.
PAPER_METRICS = (("mAP", "mAP"), ("rank1", "rank-1"), ("rank5", "rank-5"))


def paper_comparison(sweep_name: str, settings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per paper row of the sweep's table; the measured side is empty for rows not run yet.

    Args:
        sweep_name: The grid's name; ``paper_table<N>`` selects Table N (:func:`stadb_reid.paper.paper_rows`).
        settings: The report's settings (``name``, ``seeds``, ``mean``, ``std`` per metric).

    Returns:
        Entries with ``table``, ``row``, ``dataset``, ``run``, ``seeds`` (how many ran), ``paper``,
        ``mean``, ``std`` and ``difference`` (mean - paper, percentage points), each by metric name;
        ``None`` where the paper prints no figure or nothing was measured.
    """
    by_name = {setting["name"]: setting for setting in settings}
    entries = []
    for row in paper_rows(sweep_name):
        if row.run is None:
            continue  # another method's row: the trainer does not build it
        paper = row.figures.as_dict()
        setting = by_name.get(row.run, {})
        mean = {m: setting.get("mean", {}).get(m) for m, _ in PAPER_METRICS}
        std = {m: setting.get("std", {}).get(m) for m, _ in PAPER_METRICS}
        difference = {
            m: None if mean[m] is None or m not in paper else round(mean[m] - paper[m], 6)
            for m, _ in PAPER_METRICS
        }
        entries.append(
            {
                "table": row.table,
                "row": row.label,
                "dataset": row.dataset,
                "run": row.run,
                "seeds": len(setting.get("seeds", [])),
                "paper": {m: paper.get(m) for m, _ in PAPER_METRICS},
                "mean": mean,
                "std": std,
                "difference": difference,
            }
        )
    return entries


def markdown_paper_section(entries: Sequence[dict[str, Any]]) -> str:
    """The entries as a Markdown table: per metric the paper's figure, ours (mean ± std), the difference."""
    if not entries:
        return ""
    header = " | ".join(f"{label} paper | {label} ours | {label} diff." for _, label in PAPER_METRICS)
    lines = [
        f"## The paper's Table {entries[0]['table']} beside this sweep",
        "",
        "Percent; diff. = ours - paper, percentage points; `-` where the paper prints no figure or the row",
        "has not run.",
        "",
        f"| row | dataset | seeds | {header} |",
        "| --- | --- | --- | " + " | ".join("---" for _ in range(3 * len(PAPER_METRICS))) + " |",
    ]
    for entry in entries:
        cells = []
        for metric, _ in PAPER_METRICS:
            paper, mean, std, diff = (entry[key][metric] for key in ("paper", "mean", "std", "difference"))
            cells += [
                "-" if paper is None else f"{paper:.1f}",
                "-" if mean is None else (f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"),
                "-" if diff is None else f"{diff:+.2f}",
            ]
        lines.append(
            f"| {entry['row']} | {entry['dataset']} | {entry['seeds']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"
