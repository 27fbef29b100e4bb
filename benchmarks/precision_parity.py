"""Parity of the extractor's precision paths with fp32 on a real test split: cosines, rank-1 and mAP.

Loads a checkpoint trained by ``stadb-reid train``, embeds the query and gallery images of its
dataset's test split with :class:`~stadb_reid.inference.ReIDExtractor` in every precision (``fp32``,
``bf16``, ``onnx``, and ``auto``), and reports for each: the smallest and the median cosine
similarity of an embedding to its fp32 embedding, and rank-1 and mAP (Market-1501 rules, Euclidean
on L2-normalised embeddings) with their difference to fp32 in points. Targets: every cosine >= 0.999,
rank-1 and mAP within 0.3 points.

Usage::

    .venv/bin/python benchmarks/precision_parity.py --checkpoint RUN/checkpoint.pt \\
        --data-root ../shared/datasets/CUHK03-pair1

Writes ``precision_parity.json`` to ``--out`` (default ``benchmarks/out/``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from threshold_drop import machine_description

from stadb_reid.commands.evaluate import load_trained_model
from stadb_reid.config import Overrides
from stadb_reid.data.datasets import dataset_from_config
from stadb_reid.evaluation import evaluate_from_features
from stadb_reid.inference import ReIDExtractor
from stadb_reid.model.folder.config import trained_model_config

OUT_DIR = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precisions",
        default="fp32,bf16,onnx,auto",
        help="comma-separated, fp32 first (the reference); leave bf16 out on a CPU without native bf16, "
        "where oneDNN emulates it at a few GFLOP/s",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if precisions[0] != "fp32":
        parser.error("--precisions must start with fp32, the reference")
    overrides = Overrides.from_flags(data_root=args.data_root)
    network, config, state = load_trained_model(args.checkpoint, overrides)
    described = trained_model_config(network, state["config"], state["num_classes"])
    dataset = dataset_from_config(config.data)
    samples = [*dataset.query, *dataset.gallery]
    paths = [sample.path for sample in samples]
    pids = np.array([sample.pid for sample in samples])
    cameras = np.array([sample.camid for sample in samples])
    queries = np.arange(len(samples)) < len(dataset.query)
    rows: dict[str, Any] = {}
    reference = None
    for precision in precisions:
        extractor = ReIDExtractor.from_network(
            network, described, batch_size=args.batch_size, precision=precision
        )
        embeddings = extractor(paths)
        reference = embeddings if reference is None else reference
        metrics = evaluate_from_features(
            embeddings[queries],
            embeddings[~queries],
            pids[queries],
            pids[~queries],
            cameras[queries],
            cameras[~queries],
        )
        cosine = (embeddings * reference).sum(axis=1)
        rows[precision] = {
            "runs": extractor.precision_description,
            "min_cosine": float(cosine.min()),
            "median_cosine": float(np.median(cosine)),
            "rank1": 100 * float(metrics.cmc[0]),
            "mAP": 100 * metrics.mean_ap,
        }
        for key in ("rank1", "mAP"):
            rows[precision][f"{key}_delta"] = rows[precision][key] - rows["fp32"][key]
        print(precision, json.dumps(rows[precision]), flush=True)
    report = {
        "machine": machine_description(),
        "command": " ".join(["python", *sys.argv]),
        "checkpoint": str(args.checkpoint),
        "epoch": state.get("epoch"),
        "images": {"query": int(queries.sum()), "gallery": int((~queries).sum())},
        "paths": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision_parity.json").write_text(json.dumps(report, indent=2))
    print("| path | runs | min cosine | rank-1 | mAP | rank-1 delta | mAP delta |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['runs']} | {row['min_cosine']:.5f} | {row['rank1']:.2f} | {row['mAP']:.2f} "
            f"| {row['rank1_delta']:+.2f} | {row['mAP_delta']:+.2f} |"
        )


if __name__ == "__main__":
    main()
