"""Benchmark of stadb_reid.evaluation: speed at Market-1501 scale, memory at MSMT17 scale.

(a) Speed. A Market-1501-sized problem (3368 queries x 15913 gallery, 751 identities + 2798 distractors,
6 cameras) with distances from synthetic 512-d features, in two difficulties: "trained" (identity
structure, heavy-tailed per-image noise: rank-1 ~ 0.97, mAP ~ 0.8) and "random" (no identity
structure, the worst case for the evaluator). Timed, in interleaved rounds:

* ``ours``: ``evaluate_rank`` (1 thread; and ``num_workers=2`` as an extra row);
* ``numpy-loop``: the classic per-query numpy loop, torchreid's ``eval_market1501`` algorithm
  (quicksort ``argsort``, numpy sums) with its per-element precision list comprehension vectorised;
  ``--verbatim-python`` also times the published code as written (``torchreid-python-verbatim``);
* ``reference-loop``: the same per-query loop with the documented numerics (stable sort, AP summed
  left to right, ``math.fsum`` means); ``ours`` must equal it bit for bit;
* ``torchreid-cython``: torchreid's Cython evaluator, if built (``--torchreid-cy DIR`` with an
  importable ``rank_cy`` module compiled from torchreid's ``rank_cy.pyx``).

(b) Memory. MSMT17 scale (11,659 x 82,161, 3060 identities, 15 cameras, 2048-d float32 features)
through ``evaluate_from_features`` in a child process; its peak RSS (``VmHWM``, and ``ru_maxrss`` of the
child seen by the parent) and wall time are recorded. What the full matrix would cost is arithmetic.

Usage::

    .venv/bin/python benchmarks/evaluation.py [--rounds 5] [--torchreid-cy /tmp/cybuild] [--skip-memory]

Writes ``benchmarks/out/evaluation.json`` (``evaluation_speed.json`` / ``evaluation_memory.json`` when a
part is skipped) and prints tables. Results: ``benchmarks/RESULTS_evaluation.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stadb_reid.evaluation import evaluate_from_features, evaluate_rank, pairwise_distance, rank_metrics

OUT_DIR = Path(__file__).resolve().parent / "out"
GB = 1e9


# --------------------------------------------------------------------------- synthetic data


def synthetic_features(
    num_q: int,
    num_g: int,
    num_ids: int,
    num_cams: int,
    dim: int,
    num_distractors: int,
    difficulty: str,
    seed: int = 0,
    noise: float = 1.7,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L2-normalised features: identity centre + camera bias + heavy-tailed per-image noise.

    Generated block by block in place, so that the peak memory is about the features themselves.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    q_pids = np.sort(rng.integers(1, num_ids + 1, num_q))
    g_pids = np.concatenate(
        [rng.integers(1, num_ids + 1, num_g - num_distractors), np.zeros(num_distractors, int)]
    )
    q_camids = rng.integers(0, num_cams, num_q)
    g_camids = rng.integers(0, num_cams, num_g)
    centres = torch.randn(num_ids + 1, dim, generator=gen)
    cam_bias = torch.randn(num_cams, dim, generator=gen)

    def fill(pids: np.ndarray, camids: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        for s in range(0, len(pids), 4096):
            p = torch.from_numpy(pids[s : s + 4096])
            c = torch.from_numpy(camids[s : s + 4096])
            block = out[s : s + 4096]
            torch.randn(block.shape, generator=gen, out=block)
            if difficulty == "trained":
                scale = torch.from_numpy(noise * rng.lognormal(0.0, 0.5, len(p)).astype(np.float32))
                block.mul_(scale[:, None]).add_(centres[p]).add_(0.3 * cam_bias[c])
                distract = p == 0
                block[distract] = torch.randn(int(distract.sum()), dim, generator=gen) * 1.5
            block.div_(block.norm(dim=1, keepdim=True))
        return out

    return fill(q_pids, q_camids), fill(g_pids, g_camids), q_pids, g_pids, q_camids, g_camids


# --------------------------------------------------------------------------- baselines


def torchreid_python_eval(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int
) -> Any:
    """torchreid.metrics.rank.eval_market1501 (the published Python evaluator), verbatim algorithm."""
    num_q = distmat.shape[0]
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    num_valid_q = 0.0
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.0
        num_rel = raw_cmc.sum()
        tmp_cmc = raw_cmc.cumsum()
        tmp_cmc = [x / (i + 1.0) for i, x in enumerate(tmp_cmc)]
        tmp_cmc = np.asarray(tmp_cmc) * raw_cmc
        all_ap.append(tmp_cmc.sum() / num_rel)
    cmc_rows = np.asarray(all_cmc).astype(np.float32)
    return cmc_rows.sum(0) / num_valid_q, float(np.mean(all_ap))


def numpy_loop_eval(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int
) -> Any:
    """The per-query numpy loop: torchreid's eval_market1501 with the precision list comprehension
    vectorised (``cumsum / arange``), i.e. the classic ~4 s evaluator of the issue."""
    num_q = distmat.shape[0]
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = raw_cmc.cumsum() / np.arange(1.0, len(raw_cmc) + 1.0) * raw_cmc
        all_ap.append(tmp_cmc.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_cmc), float(np.mean(all_ap))


def reference_loop(
    distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int
) -> Any:
    """Per-query numpy loop with the documented numerics (stable sort, sequential AP, fsum)."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    firsts, aps = [], []
    for q_idx in range(distmat.shape[0]):
        order = indices[q_idx]
        keep = ~((g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx]))
        hits = np.flatnonzero(g_pids[order][keep] == q_pids[q_idx]) + 1
        if len(hits) == 0:
            continue
        total = 0.0
        for k, rank in enumerate(hits.tolist(), start=1):
            total += k / rank
        aps.append(total / len(hits))
        firsts.append(int(hits[0]))
    found = np.bincount(np.minimum(firsts, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    return (np.cumsum(found) / len(firsts)).astype(np.float32), math.fsum(aps) / len(aps)


# --------------------------------------------------------------------------- (a) speed


def speed(rounds: int, torchreid_cy: str | None, verbatim_python: bool) -> list[dict[str, Any]]:
    cy = None
    if torchreid_cy:
        sys.path.insert(0, torchreid_cy)
        cy = importlib.import_module("rank_cy")
    results = []
    for difficulty, n_rounds in (("trained", rounds), ("random", max(1, rounds - 2))):
        qf, gf, q_pids, g_pids, q_camids, g_camids = synthetic_features(
            3368, 15913, 751, 6, 512, 2798, difficulty, seed=1
        )
        distmat = pairwise_distance(qf, gf, "sqeuclidean").numpy()
        args = (distmat, q_pids, g_pids, q_camids, g_camids, 50)

        def ours_2_threads(*a: Any) -> tuple[np.ndarray, float]:
            m = rank_metrics(*a, num_workers=2)
            return m.cmc, m.mean_ap

        methods: dict[str, Any] = {
            "ours": evaluate_rank,
            "ours-2-threads": ours_2_threads,
            "reference-loop": reference_loop,
            "numpy-loop": numpy_loop_eval,
        }
        if cy is not None:
            methods["torchreid-cython"] = cy.evaluate_cy
        if verbatim_python:
            methods["torchreid-python-verbatim"] = torchreid_python_eval
        times: dict[str, list[float]] = {k: [] for k in methods}
        outputs: dict[str, Any] = {}
        names = list(methods)
        for r in range(n_rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
                t0 = time.perf_counter()
                outputs[name] = methods[name](*args)
                times[name].append(time.perf_counter() - t0)
            print(
                f"  [{difficulty}] round {r + 1}/{n_rounds}: "
                + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items())
            )
        cmc, mean_ap = outputs["ours"]
        full = rank_metrics(*args)
        checks = {
            "identical_to_reference_loop": bool(
                np.array_equal(cmc, outputs["reference-loop"][0]) and mean_ap == outputs["reference-loop"][1]
            ),
            "identical_2_threads": bool(
                np.array_equal(cmc, outputs["ours-2-threads"][0]) and mean_ap == outputs["ours-2-threads"][1]
            ),
            "cmc_identical_to_numpy_loop": bool(np.array_equal(cmc, outputs["numpy-loop"][0])),
            "map_abs_diff_numpy_loop": abs(mean_ap - outputs["numpy-loop"][1]),
            "tied_distances_in_rows": int(sum(len(r) - len(np.unique(r)) for r in distmat)),
        }
        if cy is not None:
            checks["cmc_identical_to_torchreid_cython"] = bool(
                np.array_equal(cmc, outputs["torchreid-cython"][0])
            )
            checks["map_abs_diff_torchreid_cython_float32"] = abs(
                mean_ap - float(outputs["torchreid-cython"][1])
            )
        if verbatim_python:
            checks["cmc_identical_to_torchreid_python_verbatim"] = bool(
                np.array_equal(cmc, outputs["torchreid-python-verbatim"][0])
            )
            checks["map_abs_diff_torchreid_python_verbatim"] = abs(
                mean_ap - outputs["torchreid-python-verbatim"][1]
            )
        assert checks["identical_to_reference_loop"], "ours differs from the per-query reference loop"
        assert checks["identical_2_threads"], "num_workers=2 changed the numbers"
        ratios = {
            k: statistics.median(t / o for t, o in zip(times[k], times["ours"], strict=True))
            for k in methods
            if k != "ours"
        }
        results.append(
            {
                "difficulty": difficulty,
                "shape": list(distmat.shape),
                "rounds": n_rounds,
                "median_s": {k: statistics.median(v) for k, v in times.items()},
                "all_s": times,
                "median_ratio_vs_ours": ratios,
                "metrics": {"rank1": full.rank(1), "mAP": full.mean_ap, "mINP": full.mean_inp},
                "checks": checks,
            }
        )
    return results


# --------------------------------------------------------------------------- (b) memory


def vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return -1


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return -1


def memory_child(dim: int, difficulty: str, out: str) -> None:
    t0 = time.perf_counter()
    base = rss_bytes()
    # noise 3.2: rank-1 ~ 0.9, mAP ~ 0.55 at 2048-d, in the range of published MSMT17 baselines.
    qf, gf, q_pids, g_pids, q_camids, g_camids = synthetic_features(
        11659, 82161, 3060, 15, dim, 0, difficulty, seed=2, noise=3.2
    )
    # Time spent in the ranking kernel (the rest of evaluate_from_features is the distance products).
    from stadb_reid.evaluation._ranker import RankEvaluator

    kernel_s = [0.0]
    process = RankEvaluator.process

    def timed_process(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return process(self, *a, **k)
        finally:
            kernel_s[0] += time.perf_counter() - t

    RankEvaluator.process = timed_process  # type: ignore[method-assign]
    t1 = time.perf_counter()
    after_features = rss_bytes()
    m = evaluate_from_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric="euclidean")
    t2 = time.perf_counter()
    Path(out).write_text(
        json.dumps(
            {
                "dim": dim,
                "difficulty": difficulty,
                "shape": [len(q_pids), len(g_pids)],
                "rss_after_imports_bytes": base,
                "rss_after_features_bytes": after_features,
                "features_bytes": (qf.numel() + gf.numel()) * 4,
                "peak_rss_vmhwm_bytes": vm_hwm_bytes(),
                "feature_generation_s": t1 - t0,
                "evaluate_from_features_s": t2 - t1,
                "ranking_kernel_s": kernel_s[0],
                "metrics": {"rank1": m.rank(1), "mAP": m.mean_ap, "mINP": m.mean_inp},
                "num_valid_queries": m.num_valid_queries,
            }
        )
    )


def full_matrix_arithmetic_gb(q: int, g: int) -> dict[str, float]:
    """What holding the full problem costs (arithmetic, not measured)."""
    return {
        "distmat_float32": q * g * 4 / GB,
        "argsort_indices_int64": q * g * 8 / GB,
        "distmat_plus_argsort": q * g * 12 / GB,
        # torchreid (Python and Cython): distmat + argsort indices + g_pids[indices] (int64) and its
        # boolean comparison with q_pids, alive together before `matches` is cast.
        "torchreid_evaluator_peak": q * g * (4 + 8 + 8 + 1) / GB,
        # Re-ranking needs the gallery-gallery distances on top.
        "reranking_g_g_float32": g * g * 4 / GB,
    }


def memory(dim: int, difficulty: str) -> dict[str, Any]:
    out = OUT_DIR / f"memory_child_{dim}_{difficulty}.json"
    cmd = [sys.executable, __file__, "--memory-child", "--dim", str(dim), "--difficulty", difficulty]
    t0 = time.perf_counter()
    # A fresh child per run; ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so it is only
    # taken as this child's peak if it exceeds the earlier ones (VmHWM from the child is exact).
    subprocess.run([*cmd, "--child-out", str(out)], check=True)
    wall = time.perf_counter() - t0
    res: dict[str, Any] = json.loads(out.read_text())
    res["children_max_ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    res["child_wall_s"] = wall
    q, g = res["shape"]
    res["full_matrix_arithmetic_gb"] = full_matrix_arithmetic_gb(q, g)
    return res


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (trained case)")
    parser.add_argument(
        "--torchreid-cy", default=None, help="directory with a compiled torchreid rank_cy module"
    )
    parser.add_argument(
        "--verbatim-python",
        action="store_true",
        help="also time torchreid's published Python loop as written (list comprehension; ~90 s a run)",
    )
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension of the memory run")
    parser.add_argument("--memory-difficulties", default="trained,random", help="comma-separated")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--difficulty", default="trained", help=argparse.SUPPRESS)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.skip_speed and args.skip_memory:
        parser.error("nothing to do: --skip-speed and --skip-memory")
    if args.memory_child:
        memory_child(args.dim, args.difficulty, args.child_out)
        return

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
        "loadavg_start": os.getloadavg(),
    }
    if not args.skip_speed:
        print("(a) speed at Market-1501 scale")
        report["speed"] = speed(args.rounds, args.torchreid_cy, args.verbatim_python)
    if not args.skip_memory:
        print(f"(b) memory at MSMT17 scale, {args.dim}-d features (child process)")
        report["memory"] = [memory(args.dim, d) for d in args.memory_difficulties.split(",")]
    report["loadavg_end"] = os.getloadavg()
    name = (
        "evaluation.json"
        if not (args.skip_speed or args.skip_memory)
        else ("evaluation_memory.json" if args.skip_speed else "evaluation_speed.json")
    )
    (OUT_DIR / name).write_text(json.dumps(report, indent=2))
    print(f"load average (1, 5, 15 min) at start {report['loadavg_start']}, at end {report['loadavg_end']}")

    for s in report.get("speed", []):
        print(
            f"\nspeed, {s['difficulty']} distances {tuple(s['shape'])}, {s['rounds']} rounds, "
            f"metrics {s['metrics']}"
        )
        print(f"{'method':<20}{'median s':>10}{'x slower than ours (median of per-round ratios)':>50}")
        for name, med in s["median_s"].items():
            ratio = s["median_ratio_vs_ours"].get(name, 1.0)
            print(f"{name:<20}{med:>10.3f}{ratio:>50.2f}")
        print("checks:", s["checks"])
    for m in report.get("memory", []):
        print(
            f"\nmemory, MSMT17 scale {tuple(m['shape'])}, {m['dim']}-d features, {m['difficulty']} distances"
        )
        print(f"  features                        {m['features_bytes'] / GB:8.2f} GB")
        print(f"  RSS after imports               {m['rss_after_imports_bytes'] / GB:8.2f} GB")
        print(f"  peak RSS (VmHWM)                {m['peak_rss_vmhwm_bytes'] / GB:8.2f} GB")
        print(f"  max ru_maxrss of children       {m['children_max_ru_maxrss_bytes'] / GB:8.2f} GB")
        print(f"  evaluate_from_features wall     {m['evaluate_from_features_s']:8.1f} s")
        print(f"    of which the ranking kernel   {m['ranking_kernel_s']:8.1f} s")
        print(f"  metrics                         {m['metrics']}")
        for k, v in m["full_matrix_arithmetic_gb"].items():
            print(f"  full-matrix arithmetic: {k:<42}{v:8.2f} GB")


if __name__ == "__main__":
    main()
