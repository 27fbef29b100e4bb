"""A sweep's report, as JSON, a Markdown table and a PNG.

Per setting: the per-seed metrics with their mean and standard deviation; per chosen pair: the paired
differences over seeds; for a sweep of one of the paper's tables, the paper's figures beside the
measured ones (:mod:`.paper_figures`).
"""

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...visualization.sweep import plot_sweep_summary
from .grid import SweepGrid
from .paper_figures import markdown_paper_section, paper_comparison
from .stats import METRICS, comparisons, summarise

__all__ = ["REPORT_NAMES", "build_report", "write_report"]

#: File names of the report in the sweep's output folder.
REPORT_NAMES = ("report.json", "report.md", "report.png")


def build_report(grid: SweepGrid, records: Sequence[dict[str, Any]], command: str) -> dict[str, Any]:
    """The report of ``records`` (finished runs of ``grid``), with the command that reproduces it."""
    per_setting: dict[str, dict[int, dict[str, float]]] = {name: {} for name in grid.runs}
    for record in records:
        per_setting[record["name"]][record["seed"]] = {
            metric: record["metrics"][metric] for metric in METRICS if metric in record["metrics"]
        }
    settings = []
    for name, per_seed in per_setting.items():
        if per_seed:
            settings.append(
                {"name": name, "seeds": sorted(per_seed), "per_seed": per_seed, **summarise(per_seed)}
            )
    paper = paper_comparison(grid.name, settings)
    return {
        "name": grid.name,
        "command": command,
        "settings": settings,
        "comparisons": [_difference_entry(d) for d in comparisons(grid.compare, per_setting)],
        **({"paper": paper} if paper else {}),
        "runs": [
            {
                key: record[key]
                for key in ("name", "seed", "command", "git", "wall_seconds", "train_images_per_second")
            }
            for record in records
        ],
    }


def write_report(report: dict[str, Any], output_dir: Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``output_dir``; return their paths."""
    paths = [output_dir / name for name in REPORT_NAMES]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown_report(report))
    paper = {entry["run"]: entry["paper"] for entry in report.get("paper", [])}
    per_setting = {s["name"]: s["per_seed"] for s in report["settings"]}
    plot_sweep_summary(per_setting, paths[2], title=report["name"], paper=paper)
    return paths


def markdown_report(report: dict[str, Any]) -> str:
    """The report as Markdown: a mean ± std table per setting, the paired differences, the paper's figures."""
    lines = [
        f"# {report['name']}",
        "",
        f"Reproduce: `{report['command']}`",
        "",
        "| setting | seeds | " + " | ".join(METRICS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in METRICS) + " |",
    ]
    for setting in report["settings"]:
        cells = [_mean_std(setting["mean"].get(m), setting["std"].get(m)) for m in METRICS]
        lines.append(f"| {setting['name']} | {len(setting['seeds'])} | " + " | ".join(cells) + " |")
    if report["comparisons"]:
        lines += [
            "",
            "Paired differences over seeds (a - b, percentage points; 95 % Student-t interval):",
            "",
            "| a - b | metric | seeds | mean | 95 % interval |",
            "| --- | --- | --- | --- | --- |",
        ]
        for entry in report["comparisons"]:
            interval = (
                "n/a (one seed)" if entry["ci95"] is None else "[{:+.2f}, {:+.2f}]".format(*entry["ci95"])
            )
            lines.append(
                f"| {entry['a']} - {entry['b']} | {entry['metric']} | {len(entry['seeds'])} | "
                f"{entry['mean']:+.2f} | {interval} |"
            )
    paper = markdown_paper_section(report.get("paper", []))
    return "\n".join(lines) + "\n" + (f"\n{paper}" if paper else "")


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _difference_entry(difference: Any) -> dict[str, Any]:
    entry = asdict(difference)
    entry["resolved"] = difference.resolved
    return entry
