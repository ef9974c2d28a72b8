#!/usr/bin/env python
"""Route on REAL model outcomes: train, calibrate and test the MLP router on the MathVista routing data.

Reads ``../shared/data/mathvista-routing`` (outside the repository; never copied into it) and skips
with a message when it is absent. Protocol: train on ``train``, early-stop and calibrate tau on
``dev``, evaluate once on ``test``; every figure is the mean (and standard deviation) over
``--seeds`` training seeds. The one hyperparameter searched, the group dropout, is chosen per run
by the lowest dev loss (``TrainConfig.group_dropout`` candidates); the test split informs no choice.
Two setups: ``pair`` (LLaVA-LLaMA2-13B on the edge, Bard in the cloud) and ``all`` (the 11 models).
Scenarios: quality-only (w = 0, 1, 0) and the three presets; the data has no latency or energy, so
cost stands in for both ("fast" and "energy" then mean "cheap").

Features: the gateway's text encoder on the prompt plus the 20 signals (there are no images), and,
unless ``--no-extras``, the dataset's text stand-ins for the image (caption + OCR embedded with the
same text encoder) and its metadata (see ``vlrouter/eval/extras.py``).

    python scripts/eval_mathvista.py                    # 5 seeds, writes reports/mathvista/
    python scripts/eval_mathvista.py --seeds 1 --max-epochs 50 --setups pair
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mathvista-routing"
PAIR = ["llava-llama2-13b", "bard-multimodal"]
POLICIES = ("mlp", "mlp@edge50", "oracle", "random", "knn", "linear", "signals", "lookup")
METRICS = ("quality", "edge_share", "cost", "rank_score", "utility")


def aggregate(reports: list[dict]) -> dict:
    """Per scenario and policy: mean and std over seeds of each metric (and mean model shares)."""
    from vlrouter.eval.evaluate import gap_interval

    out = {}
    for scenario in reports[0]["scenarios"]:
        out[scenario] = {}
        for policy in reports[0]["scenarios"][scenario]:
            runs = [r["scenarios"][scenario][policy] for r in reports]
            row = {}
            for m in METRICS:
                values = [run[m] for run in runs if run.get(m) is not None]
                if values:
                    row[m] = round(float(np.mean(values)), 5)
                    row[m + "_std"] = round(float(np.std(values)), 5)
            if "model_shares" in runs[0]:
                shares = {k: round(float(np.mean([run["model_shares"][k] for run in runs])), 4)
                          for k in runs[0]["model_shares"]}
                row["model_shares"] = {k: v for k, v in shares.items() if v > 0}
            out[scenario][policy] = row
        # the router's paired utility gap to each baseline: seeds share one test split, so the mean gap
        # gets the mean per-seed standard error (test-split noise), not a pooled one
        gaps = [r["paired"][scenario] for r in reports if scenario in r.get("paired", {})]
        if gaps:
            out[scenario]["paired"] = {
                b: gap_interval(float(np.mean([g[b]["realised"]["diff"] for g in gaps])),
                                float(np.mean([g[b]["realised"]["se"] for g in gaps])))
                for b in gaps[0] if not b.startswith("model:")}
    return out


def aggregate_floors(reports: list[dict]) -> dict:
    """Per scenario: the floor, mean ± std over seeds of retention, edge share and reductions, the mean of
    the per-seed 95% interval bounds, and how many seeds held the floor / stayed within noise."""
    out = {}
    for scenario, first in reports[0]["floors"].items():
        runs = [r["floors"][scenario] for r in reports]
        row = {"floor": first["floor"], "status": sorted({r["status"] or "fixed" for r in runs}),
               "verdicts": {v: sum(r["verdict"] == v for r in runs) for v in ("held", "within noise", "missed")},
               "ci95_mean": [round(float(np.mean([r["retention_ci95"][i] for r in runs])), 4) for i in (0, 1)]}
        for key in ("retention", "edge_share", "cost_reduction"):
            values = [r[key] for r in runs if r.get(key) is not None]
            if values:
                row[key], row[key + "_std"] = round(float(np.mean(values)), 4), round(float(np.std(values)), 4)
        out[scenario] = row
    return out


def format_floors(floors: dict) -> str:
    lines = [f"{'scenario':<14}{'floor':>7}{'retention':>16}{'95% CI (mean)':>17}{'edge%':>13}{'cost-red%':>14}"
             "  verdicts (calibration)"]
    for name, r in floors.items():
        verdicts = ", ".join(f"{k} {v}" for k, v in r["verdicts"].items() if v)
        low, high = (100 * v for v in r["ci95_mean"])
        lines.append(f"{name:<14}{r['floor']:>7.2f}{_pm(r, 'retention', 100, '.1f'):>16}"
                     f"{f'[{low:.1f}, {high:.1f}]':>17}"
                     f"{_pm(r, 'edge_share', 100, '.1f'):>13}{_pm(r, 'cost_reduction', 100, '.1f'):>14}"
                     f"  {verdicts} ({'/'.join(r['status'])})")
    return "\n".join(lines)


def _pm(row: dict, key: str, scale: float = 1.0, fmt: str = ".3f") -> str:
    if key not in row:
        return "-"
    text = format(row[key] * scale, fmt)
    return text + (f"±{format(row[key + '_std'] * scale, fmt)}" if row.get(key + "_std") else "")


def format_setup(name: str, agg: dict, n_seeds: int, models: list[str]) -> str:
    lines = [f"=== {name}: {len(models)} models; test split; mean ± std over {n_seeds} seed(s) ==="]
    for scenario, rows in agg.items():
        lines.append(f"\n[{scenario}]")
        lines.append(f"{'policy':<30}{'quality':>16}{'edge%':>14}{'cost $/q':>12}{'rank':>15}{'U':>15}")
        order = [p for p in POLICIES if p in rows] + sorted(p for p in rows if p.startswith("model:"))
        for p in order:
            r = rows[p]
            lines.append(f"{p:<30}{_pm(r, 'quality'):>16}{_pm(r, 'edge_share', 100, '.1f'):>14}"
                         f"{r.get('cost', float('nan')):>12.2e}{_pm(r, 'rank_score'):>15}{_pm(r, 'utility'):>15}")
        top = sorted(rows["mlp"].get("model_shares", {}).items(), key=lambda kv: -kv[1])
        lines.append("mlp model shares: " + ", ".join(f"{k} {v:.0%}" for k, v in top))
        paired = rows.get("paired", {})  # the router's gaps to the baselines (not a policy row)
        if paired:
            lines.append("mlp - baseline, U (95% CI, mean over seeds): " + "; ".join(
                f"{b} {g['diff']:+.4f} [{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}]" for b, g in paired.items()))
    return "\n".join(lines)


def targets(setup: str, agg: dict) -> list[str]:
    out = []
    if setup == "pair":
        for scenario, policy in (("quality", "mlp"), ("quality-only", "mlp"), ("quality-only", "mlp@edge50")):
            r = agg[scenario][policy]
            ok = r["quality"] >= 0.333 and r["edge_share"] >= 0.45
            out.append(f"pair target (quality >= 0.333 with >= 45% edge), {policy} [{scenario}]: quality "
                       f"{r['quality']:.3f}, edge {r['edge_share']:.1%} -> {'MET' if ok else 'NOT MET'}")
    if setup == "all":
        gpt4 = agg["quality"]["model:gpt4-2shot-ocr"]["cost"]
        for scenario, rows in agg.items():
            r = rows["mlp"]
            ok = r["quality"] >= 0.40 and r["cost"] < gpt4
            out.append(f"all-11 target ({scenario}: quality >= 0.40 at cost < GPT-4's {gpt4:.2e}): quality "
                       f"{r['quality']:.3f}, cost {r['cost']:.2e} -> {'MET' if ok else 'NOT MET'}")
    return out


def plot(setup: str, agg: dict, curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    rows = agg["quality-only"]
    for p, r in rows.items():
        if p.startswith("model:"):
            ax.scatter(r["cost"], r["quality"], marker="s", color="grey")
            ax.annotate(p[6:], (r["cost"], r["quality"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for p, marker in (("oracle", "*"), ("knn", "^"), ("linear", "v"), ("lookup", "D"), ("random", "x")):
        if p in rows:
            ax.scatter(rows[p]["cost"], rows[p]["quality"], marker=marker, s=60, label=p)
    for scenario, color in zip(agg, ("C0", "C1", "C2", "C3"), strict=False):
        r = agg[scenario]["mlp"]
        ax.errorbar(r["cost"], r["quality"], yerr=r.get("quality_std", 0), fmt="o", color=color,
                    label=f"mlp [{scenario}]", capsize=3)
    if curve:
        ax.plot([c["cost"] for c in curve], [c["quality"] for c in curve], "-", color="C0", alpha=0.5,
                label="mlp tau sweep (seed 0, quality-only)")
    ax.set_xscale("symlog", linthresh=1e-5)
    ax.set_xlabel("mean cost per query (USD, estimated)")
    ax.set_ylabel("quality (accuracy)")
    ax.set_title(f"MathVista test split, {setup}: quality vs cost (REAL outcomes)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curve(args, ds, X, spec, models, outcomes, full_runs) -> list[dict]:
    """Router quality (quality-only, calibrated tau) on dev and test when trained on a fraction of train."""
    from vlrouter.router.train import TrainConfig, train_router

    train, dev, test = ds.split("train"), ds.split("dev"), ds.split("test")
    w = np.array([0.0, 1.0, 0.0])
    fractions = [float(f) for f in args.learning_curve.split(",") if f.strip()]
    points = []
    for frac in [*fractions, 1.0]:
        dev_q, test_q = [], []
        n_train = len(train) if frac >= 1.0 else max(10, int(frac * len(train)))
        for seed in range(args.seeds):
            if frac >= 1.0:
                router = full_runs[seed][0]
            else:
                sub = np.sort(np.random.default_rng(1000 + seed).permutation(train)[:n_train])
                config = TrainConfig(seed=seed, max_epochs=args.max_epochs, extra_scenarios={"quality-only": (0, 1, 0)},
                                     group_dropout=args.group_dropout)
                router, _ = train_router(X, outcomes, sub, dev, spec=spec, models=models, config=config,
                                         progress=False)
            w_op, tau = router.operating_point_for("quality-only", w)
            for idx, acc in ((dev, dev_q), (test, test_q)):
                acc.append(float(outcomes.quality[idx, router.choose(router.predict(X[idx], w_op), tau)].mean()))
        points.append({"train_fraction": frac, "n_train": n_train, "dev_quality": round(float(np.mean(dev_q)), 4),
                       "test_quality": round(float(np.mean(test_q)), 4),
                       "test_quality_std": round(float(np.std(test_q)), 4)})
        print(f"learning curve: {points[-1]}")
    return points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MathVista routing data directory")
    ap.add_argument("--config", type=Path, help="YAML settings whose features: section embeds queries "
                                                "(default configs/default.yaml)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--group-dropout", metavar="P[,P...]",
                    help="candidate probabilities of blanking a feature block per training row; each run keeps "
                         "the one with the lowest dev loss (test is never used to choose; default: "
                         "TrainConfig's, 0.3,0.5,0.8)")
    ap.add_argument("--setups", default="pair,all", help="comma-separated: pair, all")
    ap.add_argument("--learning-curve", default="0.25,0.5,0.75",
                    help="fractions of the train split for the learning curve of each setup (quality-only, test "
                         "and dev quality of the router; the full split is the main run); empty to skip")
    ap.add_argument("--no-extras", action="store_true", help="ignore caption / OCR / metadata")
    ap.add_argument("--out", type=Path, default=Path("reports/mathvista"), help="JSON + plots go here")
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/vlrouter/features"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    if not (args.data / "outcomes.jsonl").is_file():
        print(f"eval_mathvista: no MathVista routing data at {args.data} (it lives in ../shared/data/, outside "
              "the repository); nothing to do.")
        return 0

    from vlrouter.config import load_settings
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.evaluate import _metrics, evaluate, lookup_rule, sweep
    from vlrouter.eval.extras import ExtraFeatures
    from vlrouter.eval.featurize import featurize
    from vlrouter.eval.report import curve_plot
    from vlrouter.features import FeaturePipeline
    from vlrouter.router.scenario import PRESETS
    from vlrouter.router.train import TrainConfig, parse_group_dropout, train_router
    from vlrouter.router.utility import Outcomes

    try:  # checked before the features are computed
        args.group_dropout = (TrainConfig.group_dropout if args.group_dropout is None
                              else parse_group_dropout(args.group_dropout))
    except ValueError as e:
        ap.error(f"--group-dropout: {e}")
    started = time.perf_counter()
    settings = load_settings(args.config)
    ds_all = load_dataset(args.data)
    train, dev = ds_all.split("train"), ds_all.split("dev")
    pipeline = FeaturePipeline(settings.features)
    X = featurize(ds_all, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    spec = pipeline.spec
    if not args.no_extras:
        extras = ExtraFeatures.fit(ds_all, train)
        X = np.hstack([X, extras.transform(ds_all, pipeline, progress=not args.no_progress)])
        spec = extras.spec(spec, pipeline.spec.text_dim)
    print(f"features: {spec.describe()} -> {X.shape[1]}-d for {len(ds_all.queries)} queries "
          f"(train {len(train)}, dev {len(dev)}, test {len(ds_all.split('test'))})")
    scenarios = {"quality-only": (0.0, 1.0, 0.0), **PRESETS}
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"data": str(args.data), "seeds": args.seeds, "extras": not args.no_extras, "spec": spec.to_dict(),
               "setups": {}}
    for setup in args.setups.split(","):
        names = PAIR if setup == "pair" else ds_all.model_names
        ds = ds_all.select_models(names)
        outcomes = Outcomes.from_dataset(ds, train)
        models = ds.model_dicts
        runs = []
        for seed in range(args.seeds):
            config = TrainConfig(seed=seed, max_epochs=args.max_epochs, group_dropout=args.group_dropout,
                                 extra_scenarios={"quality-only": (0, 1, 0)})
            runs.append(train_router(X, outcomes, train, dev, spec=spec, models=models, config=config,
                                     progress=not args.no_progress))
        chosen_gd = [info["group_dropout"]["chosen"] for _, info in runs]
        print(f"\n{setup}: group dropout chosen on dev loss per seed: {chosen_gd}")
        reports, curves, histories = [], [], []
        for seed, (router, info) in enumerate(runs):
            report = evaluate(ds, X, router, scenarios=scenarios, lookup="meta.task", single_models=True, seed=seed)
            # ECVL-Router / RouteLLM-style operating point: tau set on dev for a 50% edge share, quality-only
            w = np.array(scenarios["quality-only"])
            tau = float(np.quantile(router.margins(router.predict(X[dev], w)), 0.5))
            test = ds.split("test")
            chosen = router.choose(router.predict(X[test], w), tau)
            bounds = report["rank_score_cost_bounds"]
            report["scenarios"]["quality-only"]["mlp@edge50"] = _metrics(
                ds, outcomes, test, chosen, w, ds.model_names.index(report["all_cloud_model"]), *bounds)
            reports.append(report)
            histories.append([round(h["dev_loss"], 5) for h in info["history"]])
            if seed == 0:
                curves = [{k: p[k] for k in ("tau", "quality", "cost", "edge_share")} for p in
                          sweep(ds, X, router, "quality-only", "test", weights=scenarios["quality-only"])]
        agg = aggregate(reports)
        floors = aggregate_floors(reports)
        print("\n" + format_setup(setup, agg, args.seeds, names))
        print(f"\nfloors ({setup}; retention vs all-cloud {reports[0]['all_cloud_model']}, mean ± std over seeds):\n"
              + format_floors(floors))
        curve_plot(reports[0], args.out / f"curve-{setup}.png", scenario="fast",
                   title=f"MathVista test split, {setup} (REAL outcomes, seed 0): retention vs edge share")
        curve_points = learning_curve(args, ds, X, spec, models, outcomes, runs)
        test, w = ds.split("test"), np.array(scenarios["quality-only"])
        ceiling = {path: float(outcomes.quality[test, lookup_rule(ds, outcomes, test, test, w, path, 1)].mean())
                   for path in ("meta.task", "meta.context", "question_type")}
        print("in-sample ceilings, quality-only (best model per group FITTED ON TEST; not a router, an upper "
              "bound on what that grouping can give): " + ", ".join(f"{k} {v:.3f}" for k, v in ceiling.items()))
        lines = targets(setup, agg)
        print("\n".join(lines))
        plot(setup, agg, curves, args.out / f"pareto-{setup}.png")
        summary["setups"][setup] = {"models": names, "scenarios": agg, "floors": floors,
                                    "curves_seed0": reports[0]["curves"], "targets": lines,
                                    "dev_loss_curves": histories,
                                    "group_dropout": [info["group_dropout"] for _, info in runs],
                                    "learning_curve": curve_points, "in_sample_group_ceilings": ceiling,
                                    "tau_sweep_quality_only_seed0": curves}
    (args.out / "mathvista.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {args.out / 'mathvista.json'}, pareto and curve plots ({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
