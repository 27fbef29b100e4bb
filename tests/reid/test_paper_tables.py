"""Tables 5-11 of the paper: every row a named config that builds that row's network, one sweep per table.

``PAPER_SETTINGS`` below is written from the paper's tables (the table number, each row's label and the
setting it varies); the package's rows (:mod:`stadb_reid.paper`), the bundled configs and the sweep
files are held against it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from stadb_layers import CBAM, SE, SRM, BatchDrop, SelfThresholdDrop, TripletAttention
from stadb_reid.commands.sweep import load_grid
from stadb_reid.commands.sweep.report import build_report, markdown_report, write_report
from stadb_reid.config import Config, bundled_configs, load_config
from stadb_reid.engine import build_model
from stadb_reid.engine.preflight import validate_config
from stadb_reid.model import STADBNet
from stadb_reid.paper import PAPER_ROWS, paper_rows

# Table -> its datasets (columns) and rows: (label, setting). Settings: Table 5 the network
# ("global" or "stadb"); Tables 6 and 7 the parts (global, drop, attention; BDB, STA, SA, CA) the row
# ticks; Table 8 the attention module; Table 9 (batch size, STADB or baseline); Tables 10-11 the value.
PAPER_SETTINGS: dict[int, tuple[tuple[str, ...], list[tuple[str, Any]]]] = {
    5: (("celeb_reid",), [("Baseline", "global"), ("STADB", "stadb")]),
    6: (
        ("dukemtmc", "market1501", "cuhk03_labeled", "cuhk03_detected"),
        [
            ("Attention", (False, False, True)),
            ("Drop", (False, True, False)),
            ("Global", (True, False, False)),
            ("Global + Attention", (True, False, True)),
            ("Global + Drop", (True, True, False)),
            ("Global + Drop + Attention", (True, True, True)),
        ],
    ),
    7: (
        ("cuhk03_labeled", "cuhk03_detected", "market1501", "dukemtmc", "msmt17"),
        [
            ("BDB", (True, False, False, False)),
            ("STA", (False, True, False, False)),
            ("STA + SA", (False, True, True, False)),
            ("STA + CA", (False, True, False, True)),
            ("STA + SA + CA", (False, True, True, True)),
        ],
    ),
    8: (
        ("market1501",),
        [("Triplet-attention", TripletAttention), ("SENet", SE), ("SRM", SRM), ("CBAM", CBAM)],
    ),
    9: (
        ("market1501",),
        [
            (f"{size}, {column}", (size, column))
            for size in (16, 32, 64, 128, 256)
            for column in ("STADB", "Baseline")
        ],
    ),
    10: (
        ("market1501",),
        [(f"rho = {v}", float(v)) for v in ("0.25", "0.30", "0.40", "0.50", "0.60", "0.75", "0.80", "0.90")],
    ),
    11: (("market1501",), [(f"alpha = {v}", float(v)) for v in ("1.0", "0.9", "0.8", "0.7", "0.6", "0.5")]),
}
# Table 5's rows of other methods: figures only, no config.
OTHER_METHODS = ("DenseNet-121", "ResNet-Mid", "Two-Stream", "MLFN")

RUNNABLE_ROWS = [row for row in PAPER_ROWS if row.configs is not None]


def row_config(configs: tuple[str, ...]) -> Config:
    return validate_config(load_config(list(configs), recipe="paper"))


def meta_network(config: Config) -> STADBNet:
    bare = dataclasses.replace(config.model, pretrained=False, weights=None)
    with torch.device("meta"):
        return build_model(dataclasses.replace(config, model=bare), 10)


def test_the_rows_are_the_papers() -> None:
    for table, (datasets, rows) in PAPER_SETTINGS.items():
        labels = [label for label, _ in rows]
        expected = [(dataset, label) for dataset in datasets for label in labels]
        found = [(row.dataset, row.label) for row in paper_rows(f"paper_table{table}") if row.configs]
        assert found == expected, f"Table {table}"
    others = [row.label for row in PAPER_ROWS if row.configs is None]
    assert others == list(OTHER_METHODS) and {r.table for r in PAPER_ROWS if r.configs is None} == {5}


def test_every_ablation_config_is_a_row_and_the_old_grids_are_gone() -> None:
    overlays = {name for row in RUNNABLE_ROWS for name in row.configs[1:]}  # type: ignore[index]
    datasets = {
        "celeb_reid",
        "cuhk03_detected",
        "cuhk03_labeled",
        "demo_cpu",
        "dukemtmc",
        "market1501",
        "msmt17",
        "viper",
    }
    assert set(bundled_configs()) == overlays | datasets
    assert not {"rho_0.1", "rho_0.5", "cbam_channel", "cbam_spatial"} & set(bundled_configs())


def _parts(network: STADBNet) -> tuple[bool, bool, bool, bool, bool, bool]:
    """Global head, BatchDrop, SelfThresholdDrop, any attention, CBAM's spatial gate, its channel gate."""
    branch = network.branch
    attention = None if branch is None else branch.attention
    cbam = attention if isinstance(attention, CBAM) else None
    return (
        network.global_head is not None,
        branch is not None and isinstance(branch.regulariser, BatchDrop),
        branch is not None and isinstance(branch.threshold_drop, SelfThresholdDrop),
        attention is not None,
        cbam is not None and cbam.spatial_gate is not None,
        cbam is not None and cbam.channel_gate is not None,
    )


def _setting(table: int, config: Config) -> Any:
    """What the config sets, in the terms of ``PAPER_SETTINGS[table]``."""
    if table == 10:
        return config.model.rho
    if table == 11:
        return config.model.alpha
    network = meta_network(config)
    has_global, bdb, sta, attention, spatial, channel = _parts(network)
    full_stadb = (True, False, True, True, True, True)
    if table == 5:
        return (
            "stadb" if _parts(network) == full_stadb else ("global" if not (bdb or sta or attention) else "?")
        )
    if table == 6:
        assert not bdb and (not attention or (spatial and channel))
        return (has_global, sta, attention)
    if table == 7:
        assert has_global
        return (bdb, sta, spatial, channel)
    if table == 8:
        assert has_global and sta
        return type(network.branch.attention) if network.branch is not None else None
    # Table 9: the batch P x K, and the network (STADB or the global-only baseline).
    assert config.data.num_instances == 4
    column = "STADB" if _parts(network) == full_stadb else ("Baseline" if not (sta or attention) else "?")
    return (config.data.num_identities * config.data.num_instances, column)


@pytest.mark.parametrize("table", sorted(PAPER_SETTINGS))
def test_each_rows_config_builds_exactly_the_rows_network(table: int) -> None:
    settings = dict(PAPER_SETTINGS[table][1])
    for row in paper_rows(f"paper_table{table}"):
        if row.configs is None:
            continue
        config = row_config(row.configs)
        assert config.data.dataset == ("cuhk03" if row.dataset.startswith("cuhk03") else row.dataset)
        assert _setting(table, config) == settings[row.label], f"Table {table}, {row.dataset}, {row.label}"


@pytest.mark.parametrize("table", sorted(PAPER_SETTINGS))
def test_the_tables_sweep_runs_every_row_with_the_paper_recipe(table: int) -> None:
    grid = load_grid(f"paper_table{table}")
    assert grid.name == f"paper_table{table}" and grid.recipe == "paper" and len(grid.seeds) >= 3
    rows = [row for row in paper_rows(grid.name) if row.configs is not None]
    assert grid.runs == {row.run: (row.configs, ()) for row in rows}
    for spec in grid.specs():
        # Resolved without data: the configs exist, merge onto the recipe and pass every value check.
        config = validate_config(
            load_config(list(spec.config), {"seed": spec.seed}, list(spec.settings), recipe=spec.recipe)
        )
        assert config.seed == spec.seed and config.device == "cuda"


def test_the_report_puts_the_papers_figures_beside_the_measured_ones(tmp_path: Path) -> None:
    grid = load_grid("paper_table8")
    measured = {"market1501-attention_se": (80.0, 82.0), "market1501-attention_cbam": (86.0, 86.0)}
    records = [
        {
            "name": name,
            "seed": seed,
            "metrics": {"mAP": m_ap, "rank1": 90.0, "rank5": 97.0, "rank10": 98.0, "mINP": 50.0},
            **dict.fromkeys(("command", "git", "wall_seconds", "train_images_per_second")),
        }
        for name, values in measured.items()
        for seed, m_ap in enumerate(values)
    ]
    report = build_report(grid, records, "stadb-reid sweep paper_table8")
    paper = {entry["row"]: entry for entry in report["paper"]}
    assert list(paper) == ["Triplet-attention", "SENet", "SRM", "CBAM"]  # every row, run or not
    assert paper["SENet"]["paper"] == {"mAP": 86.4, "rank1": 94.8, "rank5": 98.0}
    assert paper["SENet"]["mean"]["mAP"] == 81.0 and paper["SENet"]["difference"]["mAP"] == pytest.approx(
        -5.4
    )
    assert paper["SENet"]["difference"]["rank5"] == pytest.approx(-1.0) and paper["SENet"]["seeds"] == 2
    assert paper["SRM"]["seeds"] == 0 and paper["SRM"]["difference"] == dict.fromkeys(
        ("mAP", "rank1", "rank5")
    )
    json_path, markdown_path, png_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["paper"] == report["paper"]
    markdown = markdown_path.read_text()
    assert (
        "| SENet | market1501 | 2 | 86.4 | 81.00 ± 1.41 | -5.40 | 94.8 | 90.00 ± 0.00 | -4.80 |" in markdown
    )
    assert "| SRM | market1501 | 0 | 86.7 | - | - |" in markdown
    assert png_path.stat().st_size > 0
    # A sweep of no paper table has no such section.
    other = build_report(dataclasses.replace(grid, name="mine"), records, "stadb-reid sweep mine")
    assert "paper" not in other and "paper" not in markdown_report(other)


def test_the_fidelity_matrix_counts_the_sweeps_runs_and_hours() -> None:
    from stadb_reid.commands.info import num_classes_of

    from .test_recipes import FIDELITY, markdown_table

    matrix = markdown_table(FIDELITY.read_text(encoding="utf-8"), "| table | sweep |")
    assert [row["table"] for row in matrix] == [str(table) for table in PAPER_SETTINGS]
    for row in matrix:
        specs = load_grid(row["sweep"].strip("`")).specs()
        # 5 h per run on Market-1501 (the paper's section 4.5), scaled by training identities (751).
        hours = sum(5 * num_classes_of(row_config(spec.config).data) / 751 for spec in specs)
        assert (int(row["runs"]), int(row["hours (paper's 4-GPU PC)"])) == (len(specs), round(hours)), row
        assert int(row["GPU-hours"]) == round(4 * hours)
