"""Benchmark of the whole re-ID test pass: feature extraction, distances, ranking, re-ranking.

Every case runs in a fresh child process, which reports its wall times and its peak RSS (``VmHWM``):

* ``extract-{fp32,bf16,channels_last}``: images/s of ``extract_features`` with a ResNet-50 STADB model
  (random weights, eval mode) on 384 x 128 images, ``--batches`` batches of ``--batch-size`` after one
  warm-up batch; ``bf16`` is bfloat16 autocast, ``channels_last`` the fp32 model and batch in NHWC.
* ``pass-{market,msmt}``: ``evaluate_from_features`` (chunked distance products + ranking; the time
  spent in the ranking kernel is measured separately) on synthetic identity-structured L2-normalised
  features (``--dim``, default 1536, the STADB embedding size).
* ``rerank-{market,msmt}-DIM``: ``k_reciprocal_rerank_features`` (k1=20, k2=6, lambda=0.3, squared
  Euclidean, from the features: the distance tiles are included) and ``rank_metrics`` of its output.
* ``peer-rerank-market-DIM``: a peer's ``re_ranking(q_g, q_q, g_g, k1, k2, lambda_value)`` loaded from
  a Python file given by ``--peer-rerank`` (kept outside the repository; the case is skipped without
  it). It squares its input, so it gets Euclidean distances; its matrices are computed before the
  timer starts. It reports the largest absolute difference to our output of the same round.

Sizes: Market-1501 (3,368 x 15,913, 751 identities + 2,798 distractors, 6 cameras) and MSMT17
(11,659 x 82,161, 3,060 identities, 15 cameras). Market re-ranking runs ``--rounds`` interleaved
rounds (ours at ``--compare-dim`` and ``--dim``, the peer at ``--compare-dim``); medians are reported.

Usage::

    .venv/bin/python benchmarks/evaluation.py [--peer-rerank /tmp/peers/rerank.py] [--rounds 3]

Writes ``benchmarks/out/evaluation.json``. Results: ``benchmarks/RESULTS_evaluation.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

OUT_DIR = Path(__file__).resolve().parent / "out"
SCALES: dict[str, dict[str, Any]] = {
    "market": {"num_q": 3368, "num_g": 15913, "num_ids": 751, "num_cams": 6, "num_distractors": 2798},
    "msmt": {"num_q": 11659, "num_g": 82161, "num_ids": 3060, "num_cams": 15, "num_distractors": 0},
}
RERANK = {"k1": 20, "k2": 6, "lambda_value": 0.3}


def synthetic_features(
    scale: str, dim: int, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, Any, Any, Any, Any]:
    """L2-normalised identity centre + camera bias + heavy-tailed noise; distractors are pure noise."""
    s = SCALES[scale]
    noise = 1.7 if scale == "market" else 3.2
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    q_pids = np.sort(rng.integers(1, s["num_ids"] + 1, s["num_q"]))
    g_pids = np.concatenate(
        [
            rng.integers(1, s["num_ids"] + 1, s["num_g"] - s["num_distractors"]),
            np.zeros(s["num_distractors"], int),
        ]
    )
    q_cams, g_cams = rng.integers(0, s["num_cams"], s["num_q"]), rng.integers(0, s["num_cams"], s["num_g"])
    centres = torch.randn(s["num_ids"] + 1, dim, generator=gen)
    cam_bias = torch.randn(s["num_cams"], dim, generator=gen)

    def fill(pids: Any, cams: Any) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        for i in range(0, len(pids), 4096):
            p, c = torch.from_numpy(pids[i : i + 4096]), torch.from_numpy(cams[i : i + 4096])
            block = out[i : i + 4096]
            torch.randn(block.shape, generator=gen, out=block)
            scale_ = torch.from_numpy(noise * rng.lognormal(0.0, 0.5, len(p)).astype(np.float32))
            block.mul_(scale_[:, None]).add_(centres[p]).add_(0.3 * cam_bias[c])
            block[p == 0] = torch.randn(int((p == 0).sum()), dim, generator=gen) * 1.5
            block.div_(block.norm(dim=1, keepdim=True))
        return out

    return fill(q_pids, q_cams), fill(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return -1


def metrics_of(m: Any) -> dict[str, float]:
    return {"rank1": m.rank(1), "mAP": m.mean_ap, "mINP": m.mean_inp}


# --------------------------------------------------------------------------- cases (child side)


def case_extract(mode: str, batch_size: int, batches: int) -> dict[str, Any]:
    from stadb_reid.evaluation import extract_features
    from stadb_reid.model import STADBNet

    torch.manual_seed(0)
    model = STADBNet(751, backbone="resnet50", pretrained=False).eval()
    images = torch.randn(batch_size, 3, 384, 128)
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = list(range(batch_size))
    loader = [(images, labels, labels)] * batches
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
        extract_features(model, loader[:1])  # warm-up
        t0 = time.perf_counter()
        feats = extract_features(model, loader).features
        wall = time.perf_counter() - t0
    return {
        "images": batch_size * batches,
        "seconds": wall,
        "images_per_s": batch_size * batches / wall,
        "feature_dim": feats.shape[1],
    }


def case_pass(scale: str, dim: int) -> dict[str, Any]:
    from stadb_reid.evaluation import _ranker, evaluate_from_features

    qf, gf, *labels = synthetic_features(scale, dim, seed=2)
    kernel = [0.0]
    process = _ranker.RankEvaluator.process

    def timed(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return process(self, *a, **k)
        finally:
            kernel[0] += time.perf_counter() - t

    _ranker.RankEvaluator.process = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    m = evaluate_from_features(qf, gf, *labels, metric="euclidean")
    wall = time.perf_counter() - t0
    return {
        "evaluate_from_features_s": wall,
        "ranking_kernel_s": kernel[0],
        "distances_s": wall - kernel[0],
        "metrics": metrics_of(m),
    }


def case_rerank(scale: str, dim: int, save: str | None) -> dict[str, Any]:
    from stadb_reid.evaluation import k_reciprocal_rerank_features, rank_metrics

    qf, gf, *labels = synthetic_features(scale, dim)
    t0 = time.perf_counter()
    out = k_reciprocal_rerank_features(qf, gf, **RERANK, metric="sqeuclidean")  # type: ignore[arg-type]
    t1 = time.perf_counter()
    m = rank_metrics(out, *labels)
    t2 = time.perf_counter()
    if save:
        np.save(save, out)
    return {"rerank_s": t1 - t0, "ranking_s": t2 - t1, "metrics": metrics_of(m)}


def case_peer(scale: str, dim: int, peer: str, ours: str | None) -> dict[str, Any]:
    from stadb_reid.evaluation import pairwise_distance, rank_metrics

    spec = importlib.util.spec_from_file_location("peer_rerank", peer)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    qf, gf, *labels = synthetic_features(scale, dim)
    t0 = time.perf_counter()
    mats = [pairwise_distance(a, b, "euclidean").numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    t1 = time.perf_counter()
    out = module.re_ranking(*mats, **RERANK)
    t2 = time.perf_counter()
    res: dict[str, Any] = {
        "matrices_s": t1 - t0,
        "rerank_s": t2 - t1,
        "peak_rss_during_rerank_bytes": peak_rss(),
    }
    del mats
    res["metrics"] = metrics_of(rank_metrics(out, *labels))
    if ours and Path(ours).exists():
        res["max_abs_diff_vs_ours"] = float(np.abs(out - np.load(ours)).max())
    return res


def run_child(args: argparse.Namespace) -> None:
    kind, *rest = args.case.split(":")
    t0 = time.perf_counter()
    if kind == "extract":
        res = case_extract(rest[0], args.batch_size, args.batches)
    elif kind == "pass":
        res = case_pass(rest[0], int(rest[1]))
    elif kind == "rerank":
        res = case_rerank(rest[0], int(rest[1]), args.save)
    else:
        res = case_peer(rest[0], int(rest[1]), args.peer_rerank, args.save)
    res.update(case=args.case, child_wall_s=time.perf_counter() - t0, peak_rss_bytes=peak_rss())
    Path(args.child_out).write_text(json.dumps(res))


# --------------------------------------------------------------------------- orchestration


def spawn(case: str, args: argparse.Namespace, save: str | None = None) -> dict[str, Any]:
    out = OUT_DIR / "child.json"
    cmd = [sys.executable, __file__, "--case", case, "--child-out", str(out)]
    cmd += ["--batch-size", str(args.batch_size), "--batches", str(args.batches)]
    if args.peer_rerank:
        cmd += ["--peer-rerank", args.peer_rerank]
    if args.tiny:
        cmd.append("--tiny")
    if save:
        cmd += ["--save", save]
    print(f"  {case} ...", flush=True)
    subprocess.run(cmd, check=True)
    res: dict[str, Any] = json.loads(out.read_text())
    res["loadavg"] = os.getloadavg()
    print(f"    {json.dumps({k: v for k, v in res.items() if k != 'case'})}", flush=True)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=1536, help="feature dimension of the test pass")
    parser.add_argument(
        "--compare-dim", type=int, default=256, help="dimension of the side-by-side re-ranking"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved Market re-ranking rounds")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--peer-rerank", default=None, help="a .py file outside the repo defining re_ranking")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: extract,market,msmt")
    parser.add_argument("--tiny", action="store_true", help="sizes divided by 50, for a smoke test")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        for sizes in SCALES.values():
            sizes.update({k: max(2, v // 50) for k, v in sizes.items() if k != "num_cams"})
    if args.case:
        run_child(args)
        return
    if args.peer_rerank and not Path(args.peer_rerank).is_file():
        print(f"--peer-rerank {args.peer_rerank} not found: peer skipped")
        args.peer_rerank = None
    skip = set(filter(None, args.skip.split(",")))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "dim": args.dim,
            "compare_dim": args.compare_dim,
            "rerank": RERANK,
            "peer": Path(args.peer_rerank).name if args.peer_rerank else None,
        },
        "loadavg_start": os.getloadavg(),
    }
    if "extract" not in skip:
        report["extract"] = [spawn(f"extract:{m}", args) for m in ("fp32", "bf16", "channels_last")]
    if "market" not in skip:
        report["market_pass"] = spawn(f"pass:market:{args.dim}", args)
        rounds: dict[str, list[dict[str, Any]]] = {}
        saved = str(OUT_DIR / "ours_market.npy")
        for _ in range(args.rounds):
            cases = [(f"rerank:market:{args.compare_dim}", saved), (f"rerank:market:{args.dim}", None)]
            if args.peer_rerank:
                cases.insert(1, (f"peer:market:{args.compare_dim}", saved))
            for case, save in cases:
                rounds.setdefault(case, []).append(spawn(case, args, save))
        report["market_rerank"] = {
            case: {
                "runs": runs,
                "median_rerank_s": statistics.median(r["rerank_s"] for r in runs),
                "median_peak_rss_bytes": statistics.median(r["peak_rss_bytes"] for r in runs),
            }
            for case, runs in rounds.items()
        }
        ours, peer = f"rerank:market:{args.compare_dim}", f"peer:market:{args.compare_dim}"
        if peer in rounds:
            ratios = [p["rerank_s"] / o["rerank_s"] for o, p in zip(rounds[ours], rounds[peer], strict=True)]
            report["market_speedup_median"] = statistics.median(ratios)
    if "msmt" not in skip:
        report["msmt_pass"] = spawn(f"pass:msmt:{args.dim}", args)
        report["msmt_rerank"] = spawn(f"rerank:msmt:{args.dim}", args)
    report["loadavg_end"] = os.getloadavg()
    (OUT_DIR / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k.endswith(("median", "start", "end"))}, indent=2))


if __name__ == "__main__":
    main()
