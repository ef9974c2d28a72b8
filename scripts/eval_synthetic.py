#!/usr/bin/env python
"""Router vs baselines over several independently generated SYNTHETIC benches, with confidence intervals.

One test split of 400 queries cannot separate policies whose utilities differ by less than about
0.01 (the paired standard error of a realised-utility gap is 0.004 to 0.009 there). This script
generates ``--seeds`` benches for each ``--blind-scales`` value (see ``vlrouter/eval/synthetic.py``:
1.0 is the default bench, mostly what the complexity signals measure; 2.5 the "semantic" variant in
which the edge models' content blind spots matter more), trains the MLP router on each bench's train
split with that seed, evaluates it once on the test split, and pools the per-bench paired gaps
(router minus baseline, realised utility and the simulator's noise-free expected utility E[U]):
pooled gap = mean over benches, standard error = sqrt(sum of squared per-bench SEs) / benches, so the
95% interval is over every test query of every bench. Everything here is SYNTHETIC.

    python scripts/eval_synthetic.py                              # 3 seeds x scales 1.0, 2.5 (~4 min on 2 cores)
    python scripts/eval_synthetic.py --seeds 0 --blind-scales 2.5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

BASELINES = ("signals", "linear", "knn", "random", "always_edge", "always_cloud")


def bench_dir(work: Path, n: int, seed: int, scale: float) -> Path:
    return work / f"syn-n{n}-seed{seed}-blind{scale:g}"


def run_one(path: Path, seed: int, pipeline, args) -> dict:
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.evaluate import evaluate
    from vlrouter.eval.featurize import featurize
    from vlrouter.eval.floors import retention_at
    from vlrouter.router.train import TrainConfig, train_router
    from vlrouter.router.utility import Outcomes

    ds = load_dataset(path)
    epochs = {"max_epochs": args.max_epochs} if args.max_epochs else {}  # else TrainConfig's default
    X = featurize(ds, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    train, dev = ds.split("train"), ds.split("dev")
    router, info = train_router(X, Outcomes.from_dataset(ds, train), train, dev, spec=pipeline.spec,
                                models=ds.model_dicts,
                                config=TrainConfig(seed=seed, **epochs), progress=False)
    report = evaluate(ds, X, router, seed=seed)
    matched = {sc: {p: round(retention_at(report["curves"][sc][p], f["edge_share"]), 5)
                    for p in ("knn", "linear", "signals", "random", "oracle")}
               for sc, f in report["floors"].items()}
    return {"bench": path.name, "seed": seed, "train_seconds": info["seconds"], "n_test": report["n"],
            "floors": report["floors"], "matched_share_retention": matched,
            "utility": {sc: {p: rows[p]["utility"] for p in ("mlp", *BASELINES)} for sc, rows in
                        report["scenarios"].items()},
            "expected_utility": {sc: {p: rows[p].get("expected_utility") for p in ("mlp", *BASELINES)}
                                 for sc, rows in report["scenarios"].items()},
            "paired": report["paired"]}


def pool(runs: list[dict]) -> dict:
    from vlrouter.eval.evaluate import gap_interval

    """Per scenario and baseline: the pooled realised and expected gaps with 95% intervals."""
    out = {}
    for scenario in runs[0]["paired"]:
        out[scenario] = {}
        for base in BASELINES:
            row = {}
            for kind in ("realised", "expected"):
                gaps = [r["paired"][scenario][base][kind] for r in runs if kind in r["paired"][scenario][base]]
                if not gaps:
                    continue
                se = float(np.sqrt(sum(g["se"] ** 2 for g in gaps)) / len(gaps))
                row[kind] = {**gap_interval(float(np.mean([g["diff"] for g in gaps])), se),
                             "per_bench": [g["diff"] for g in gaps]}
            out[scenario][base] = row
    return out


def floor_lines(runs: list[dict]) -> str:
    """Per scenario over the benches: floor, retention (mean, min), edge share, verdicts, and the retention
    of each baseline ranked at the router's own edge share (mean gap, router minus baseline, +- std)."""
    lines = ["floors: retention vs all-cloud, mean [min] over benches; baselines at the router's edge share"]
    for sc in runs[0]["floors"]:
        f = [r["floors"][sc] for r in runs]
        ret = [x["retention"] for x in f]
        verdicts = {v: sum(x["verdict"] == v for x in f) for v in ("held", "within noise", "missed")}
        gaps = {p: [x["retention"] - r["matched_share_retention"][sc][p] for x, r in zip(f, runs, strict=True)]
                for p in runs[0]["matched_share_retention"][sc]}
        lines.append(f"  {sc:<8} floor {f[0]['floor']:.2f}: retention {np.mean(ret):.3f} [{min(ret):.3f}], edge "
                     f"{np.mean([x['edge_share'] for x in f]):.1%}, " + ", ".join(f"{k} {v}" for k, v in
                                                                              verdicts.items() if v))
        lines.append("           mlp - baseline retention at matched share: " + "; ".join(
            f"{p} {np.mean(g):+.3f}±{np.std(g):.3f}" for p, g in gaps.items()))
    return "\n".join(lines)


def verdict(pooled: dict, kind: str) -> str:
    """Where the router's gap to each baseline is significantly positive, significantly negative, or a tie."""
    lines = []
    for scenario, rows in pooled.items():
        parts = []
        for base, row in rows.items():
            if kind not in row:
                continue
            lo, hi = row[kind]["ci95"]
            mark = "WIN" if lo > 0 else ("LOSS" if hi < 0 else "tie")
            parts.append(f"{base} {row[kind]['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] {mark}")
        lines.append(f"  {scenario:<8} " + "; ".join(parts))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="bench and training seeds, comma-separated (default 0,1,2)")
    parser.add_argument("--blind-scales", default="1.0,2.5",
                        help="blind-spot multipliers, comma-separated (default 1.0,2.5)")
    parser.add_argument("--n", type=int, default=2000, help="queries per bench (default 2000)")
    parser.add_argument("--work", type=Path, default=Path(".cache/vlrouter/benches"),
                        help="where the generated benches are kept (reused when present)")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/vlrouter/features"),
                        help="feature cache (default .cache/vlrouter/features)")
    parser.add_argument("--config", default=None, help="YAML settings whose features: section embeds queries")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="per net (default: TrainConfig's; early stopping on dev ends most runs sooner)")
    parser.add_argument("--json", type=Path, default=Path("reports/synthetic/multi_bench.json"),
                        help="write the per-bench and pooled figures here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        scales = [float(s) for s in args.blind_scales.split(",")]
    except ValueError:
        parser.error("--seeds takes integers and --blind-scales numbers, comma-separated")
    if args.n < 100 or any(s < 0 for s in scales) or (args.max_epochs is not None and args.max_epochs < 1):
        parser.error("--n must be >= 100, every blind scale >= 0 and --max-epochs >= 1")

    from tqdm.auto import tqdm

    from vlrouter.config import load_settings
    from vlrouter.eval.synthetic import make_synthetic_bench
    from vlrouter.features import FeaturePipeline

    pipeline = FeaturePipeline(load_settings(args.config).features)  # the encoders load once for every bench
    started = time.perf_counter()
    result = {"synthetic": True, "n": args.n, "seeds": seeds, "blind_scales": {}}
    jobs = [(scale, seed) for scale in scales for seed in seeds]
    runs: dict[float, list[dict]] = {scale: [] for scale in scales}
    for scale, seed in tqdm(jobs, desc="benches", disable=args.no_progress, unit="bench"):
        path = bench_dir(args.work, args.n, seed, scale)
        if not (path / "outcomes.jsonl").is_file():
            make_synthetic_bench(path, args.n, seed=seed, blind_scale=scale, progress=False)
        runs[scale].append(run_one(path, seed, pipeline, args))
    for scale in scales:
        pooled = pool(runs[scale])
        result["blind_scales"][f"{scale:g}"] = {"runs": runs[scale], "pooled": pooled}
        n_test = sum(r["n_test"] for r in runs[scale])
        print(f"\nSYNTHETIC benches, blind scale {scale:g}: {len(seeds)} benches, {n_test} test queries in all")
        print(floor_lines(runs[scale]))
        print("mean utility over benches (mlp | " + " | ".join(BASELINES) + "):")
        for scenario in runs[scale][0]["utility"]:
            means = [np.mean([r["utility"][scenario][p] for r in runs[scale]]) for p in ("mlp", *BASELINES)]
            print(f"  {scenario:<8} " + " | ".join(f"{m:+.4f}" for m in means))
        print("mlp - baseline, realised U, pooled (95% CI):")
        print(verdict(pooled, "realised"))
        print("mlp - baseline, E[U] (simulator's P(correct), noise-free), pooled (95% CI):")
        print(verdict(pooled, "expected"))
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json} ({result['seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
