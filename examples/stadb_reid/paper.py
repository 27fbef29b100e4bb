"""The STADB paper's figures for its Tables 5-11, each row with the configs that reproduce it.

Every :class:`PaperRow` holds one row of one table on one dataset, as printed in the paper (Jiang,
Wang, Wang, Zheng): its label, the figures (percent; rank-5 where the table prints it), and the bundled
configs that build that network (``stadb-reid train --config DATASET --config OVERLAY...``). Rows of
other methods (Table 5's DenseNet-121, ResNet-Mid, Two-Stream, MLFN) have no configs: this trainer
does not build them, and their figures are context only.

A row's :attr:`PaperRow.run` is its run name in the table's sweep (``sweeps/paper_table<N>.yaml``),
so a sweep report can put the paper's figures next to the measured ones (:func:`paper_rows`).

Examples:
    >>> row = paper_rows("paper_table10")[1]
    >>> row.label, row.configs, row.figures.mAP, row.run
    ('rho = 0.30', ('market1501', 'rho_0.30'), 86.7, 'market1501-rho_0_30')
    >>> sorted({row.table for row in PAPER_ROWS})
    [5, 6, 7, 8, 9, 10, 11]
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAPER_ROWS", "PaperFigures", "PaperRow", "paper_rows"]


@dataclass(frozen=True)
class PaperFigures:
    """The figures the paper prints for one row on one dataset, in percent."""

    mAP: float  # noqa: N815 (the metric's name, as in the sweep records)
    rank1: float
    rank5: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The printed figures by metric name (``mAP``, ``rank1``, ``rank5``), rank-5 where printed."""
        figures = {"mAP": self.mAP, "rank1": self.rank1}
        return figures if self.rank5 is None else {**figures, "rank5": self.rank5}


@dataclass(frozen=True)
class PaperRow:
    """One row of one of the paper's tables on one dataset.

    Attributes:
        table: The table's number.
        label: The row as the table labels it (for Table 9, the batch size and the column group).
        key: The row's short name: its last overlay, or ``stadb`` / ``baseline`` (Table 5) and
            ``batch_<size>_baseline`` (Table 9's baseline column).
        dataset: The bundled dataset config of the table's column (``market1501``...).
        overlays: The ablation configs after the dataset config that build the row's network, or
            ``None`` for another method's row, which this trainer does not build.
        figures: What the paper prints.
    """

    table: int
    label: str
    key: str
    dataset: str
    overlays: tuple[str, ...] | None
    figures: PaperFigures

    @property
    def configs(self) -> tuple[str, ...] | None:
        """The run's ``--config`` files in order: the dataset config, then the overlays."""
        return None if self.overlays is None else (self.dataset, *self.overlays)

    @property
    def run(self) -> str | None:
        """The run's name in the table's sweep file, ``<dataset>-<key>`` with dots as ``_``."""
        return None if self.overlays is None else f"{self.dataset}-{self.key.replace('.', '_')}"


def _figures(*values: float) -> PaperFigures:
    return PaperFigures(*values)


# Table 5: Celeb-reID, mAP / rank-1 / rank-5. "Baseline" is the global branch alone (the paper's
# section 4.4 names that row the baseline); the first four rows are other methods.
_TABLE5 = [
    ("DenseNet-121", "densenet121", None, (5.9, 42.9, 56.4)),
    ("ResNet-Mid", "resnet_mid", None, (5.8, 43.3, 54.6)),
    ("Two-Stream", "two_stream", None, (7.8, 36.3, 54.5)),
    ("MLFN", "mlfn", None, (6.0, 41.4, 54.7)),
    ("Baseline", "baseline", ("ablation_global",), (6.8, 48.1, 63.7)),
    ("STADB", "stadb", (), (7.4, 50.2, 65.1)),
]

# Table 6: mAP / rank-1 per dataset column.
_TABLE6_DATASETS = ("dukemtmc", "market1501", "cuhk03_labeled", "cuhk03_detected")
_TABLE6 = [
    ("Attention", "ablation_attention_only", ((74.9, 87.5), (84.4, 93.7), (72.6, 75.4), (69.5, 72.4))),
    ("Drop", "ablation_drop_only", ((73.0, 86.4), (84.4, 93.5), (73.2, 76.6), (70.9, 73.5))),
    ("Global", "ablation_global", ((73.4, 87.7), (84.1, 94.0), (72.9, 75.8), (70.2, 73.0))),
    (
        "Global + Attention",
        "ablation_global_attention",
        ((75.4, 88.0), (84.8, 94.4), (78.2, 80.4), (73.9, 77.4)),
    ),
    ("Global + Drop", "ablation_global_drop", ((76.6, 88.6), (85.7, 93.7), (78.8, 81.6), (74.5, 77.8))),
    (
        "Global + Drop + Attention",
        "ablation_global_drop_attention",
        ((77.1, 89.1), (86.7, 95.2), (80.0, 83.2), (76.2, 79.3)),
    ),
]

# Table 7: mAP / rank-1 per dataset column.
_TABLE7_DATASETS = ("cuhk03_labeled", "cuhk03_detected", "market1501", "dukemtmc", "msmt17")
_TABLE7 = [
    ("BDB", "bdb", ((76.7, 79.4), (73.5, 76.4), (86.3, 94.7), (76.0, 88.7), (51.5, 78.8))),
    ("STA", "ablation_sta", ((78.9, 81.2), (75.1, 77.9), (86.2, 94.8), (76.5, 88.9), (51.8, 79.3))),
    ("STA + SA", "ablation_sta_sa", ((79.6, 82.6), (75.8, 78.8), (86.6, 95.0), (76.8, 89.0), (52.1, 79.6))),
    ("STA + CA", "ablation_sta_ca", ((79.4, 82.5), (75.7, 78.6), (86.5, 94.9), (76.7, 88.9), (52.0, 79.5))),
    (
        "STA + SA + CA",
        "ablation_sta_sa_ca",
        ((80.0, 83.2), (76.2, 79.3), (86.8, 95.2), (77.1, 89.1), (52.3, 79.9)),
    ),
]

# Table 8: Market-1501, mAP / rank-1 / rank-5.
_TABLE8 = [
    ("Triplet-attention", "attention_triplet", (86.5, 94.9, 98.0)),
    ("SENet", "attention_se", (86.4, 94.8, 98.0)),
    ("SRM", "attention_srm", (86.7, 94.7, 97.9)),
    ("CBAM", "attention_cbam", (86.7, 95.2, 97.9)),
]

# Table 9: Market-1501, batch size -> (STADB, Baseline), each mAP / rank-1 / rank-5.
_TABLE9 = [
    (16, (79.5, 92.5, 97.2), (73.7, 90.1, 96.4)),
    (32, (80.0, 92.2, 96.9), (77.4, 91.8, 96.9)),
    (64, (84.3, 94.2, 97.5), (79.7, 93.0, 97.2)),
    (128, (86.7, 95.2, 97.9), (83.0, 93.4, 97.4)),
    (256, (83.8, 93.9, 97.6), (80.0, 93.5, 97.4)),
]

# Table 10 (rho) and Table 11 (alpha): Market-1501, mAP / rank-1 / rank-5, values as printed.
_TABLE10 = [
    ("0.25", (86.7, 95.2, 97.9)),
    ("0.30", (86.7, 94.7, 98.0)),
    ("0.40", (86.4, 94.8, 97.9)),
    ("0.50", (86.5, 94.9, 97.8)),
    ("0.60", (86.5, 94.8, 98.0)),
    ("0.75", (86.2, 94.4, 97.9)),
    ("0.80", (86.7, 94.9, 98.0)),
    ("0.90", (86.5, 94.7, 97.7)),
]
_TABLE11 = [
    ("1.0", (86.2, 94.7, 97.8)),
    ("0.9", (86.0, 94.3, 97.8)),
    ("0.8", (86.7, 95.2, 97.9)),
    ("0.7", (85.6, 94.6, 97.5)),
    ("0.6", (85.5, 94.1, 97.5)),
    ("0.5", (85.3, 94.3, 97.7)),
]


def _all_rows() -> tuple[PaperRow, ...]:
    rows = [
        PaperRow(5, label, key, "celeb_reid", overlays, _figures(*f)) for label, key, overlays, f in _TABLE5
    ]
    for table, datasets, entries in ((6, _TABLE6_DATASETS, _TABLE6), (7, _TABLE7_DATASETS, _TABLE7)):
        for dataset_index, dataset in enumerate(datasets):
            rows += [
                PaperRow(table, label, overlay, dataset, (overlay,), _figures(*per_dataset[dataset_index]))
                for label, overlay, per_dataset in entries
            ]
    rows += [PaperRow(8, label, key, "market1501", (key,), _figures(*f)) for label, key, f in _TABLE8]
    for size, stadb, baseline in _TABLE9:
        batch = f"batch_{size}"
        rows.append(PaperRow(9, f"{size}, STADB", batch, "market1501", (batch,), _figures(*stadb)))
        rows.append(
            PaperRow(
                9,
                f"{size}, Baseline",
                f"{batch}_baseline",
                "market1501",
                (batch, "ablation_global"),
                _figures(*baseline),
            )
        )
    for table, name, values in ((10, "rho", _TABLE10), (11, "alpha", _TABLE11)):
        rows += [
            PaperRow(table, f"{name} = {v}", f"{name}_{v}", "market1501", (f"{name}_{v}",), _figures(*f))
            for v, f in values
        ]
    return tuple(rows)


#: Every row of Tables 5-11, table by table, each table's datasets in the order of its columns.
PAPER_ROWS: tuple[PaperRow, ...] = _all_rows()


def paper_rows(sweep_name: str) -> list[PaperRow]:
    """The rows of the table a sweep reproduces: ``paper_table<N>`` gives Table N's rows, else none.

    Examples:
        >>> [row.label for row in paper_rows("paper_table8")]
        ['Triplet-attention', 'SENet', 'SRM', 'CBAM']
        >>> paper_rows("table6_cuhk03_pair1")
        []
    """
    prefix = "paper_table"
    if not sweep_name.startswith(prefix) or not sweep_name[len(prefix) :].isdigit():
        return []
    table = int(sweep_name[len(prefix) :])
    return [row for row in PAPER_ROWS if row.table == table]
