#!/usr/bin/env python
"""Does a router trained on fp32 features decide the same with int8 / bf16 features?

SYNTHETIC bench (``scripts/make_synthetic_bench.py``, the demo encoders of ``--config``): a router is
trained with ``vlrouter train`` on fp32 features; the test split is then featurised at each
``--precisions`` value and routed by that same checkpoint (which loads against the int8 pipeline: a
FeatureSpec that differs only in precision is accepted). Per scenario (fast / quality / energy) the
report gives the share of test queries sent to the same tier (and the same model) as with fp32
features, and the change in quality, edge share and realised utility. The demo encoders are small (a
random tiny SigLIP and the real all-MiniLM-L6-v2), so agreement here says little for ViT-B/16: see
``scripts/bench_features.py`` for the production shapes' embedding cosines.

MathVista routing data (REAL outcomes, ``--mathvista``, default ../shared/data/mathvista-routing;
skipped when absent): text + caption/OCR extras as in ``scripts/eval_mathvista.py``; the router is
trained on ``train`` with fp32 features (early stopping and tau on ``dev``) and the agreement and
changes are reported on ``test`` only, for the LLaVA + Bard pair and all 11 models.

    python scripts/eval_precision.py                          # synthetic + MathVista, int8 and bf16
    python scripts/eval_precision.py --precisions int8 --no-mathvista --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MATHVISTA = ROOT.parent / "shared" / "data" / "mathvista-routing"
PAIR = ["llava-llama2-13b", "bard-multimodal"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precisions", default="int8,bf16", help="compared with fp32, comma-separated (int8,bf16)")
    ap.add_argument("--config", type=Path, help="YAML whose features: section names the encoders "
                                                "(default configs/default.yaml)")
    ap.add_argument("--n", type=int, default=2000, help="synthetic bench size (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="bench and training seed")
    ap.add_argument("--max-epochs", type=int, help="epoch cap per net (default: the trainer's)")
    ap.add_argument("--work", type=Path, default=Path(".cache/vlrouter/eval-precision"),
                    help="bench, checkpoints and feature caches go here")
    ap.add_argument("--mathvista", type=Path, default=DEFAULT_MATHVISTA, help="MathVista routing data")
    ap.add_argument("--no-mathvista", action="store_true", help="only the synthetic bench")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", type=Path, help="write the report here")
    args = ap.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = sorted(set(args.precisions) - {"int8", "bf16"})
    if bad or not args.precisions:
        ap.error(f"--precisions: give int8 and/or bf16 (got {bad or 'nothing'})")
    return args


def features_at(settings, precision: str):
    """The configured FeaturesConfig with both encoders at ``precision``, on the CPU."""
    f = settings.features
    update = {name: getattr(f, name).model_copy(update={"precision": precision})
              for name in ("image_encoder", "text_encoder") if getattr(f, name) is not None}
    return f.model_copy(update={**update, "device": "cpu"})


def block_cosines(spec, a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> dict:
    """Per embedding block: min / mean cosine of the two feature matrices on the rows where it is non-zero."""
    out = {}
    for name, sl in spec.slices().items():
        if name == "signals" or sl.stop <= sl.start:
            continue
        x, y = a[idx, sl], b[idx, sl]
        live = (np.linalg.norm(x, axis=1) > 0) & (np.linalg.norm(y, axis=1) > 0)
        if live.any():
            cos = (x[live] * y[live]).sum(1) / np.linalg.norm(x[live], axis=1) / np.linalg.norm(y[live], axis=1)
            out[name] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5), "n": int(live.sum())}
    return out


def agreement(router, ds, X_ref: np.ndarray, X_low: np.ndarray, idx: np.ndarray, scenarios: dict) -> dict:
    """Per scenario: same-tier and same-model shares, and fp32 vs low-precision outcome metrics."""
    from vlrouter.router.utility import Outcomes

    out = Outcomes.from_dataset(ds, ds.split("train"), refs=router.refs)
    tiers = ds.tiers
    res = {}
    for name, w_tuple in scenarios.items():
        w = np.array(w_tuple, dtype=float)
        w_op, tau = router.operating_point_for(name, w)
        ref = router.choose(router.predict(X_ref[idx], w_op), tau)
        low = router.choose(router.predict(X_low[idx], w_op), tau)
        a, b = out.summary(ref, idx, w, tiers), out.summary(low, idx, w, tiers)
        res[name] = {"same_tier": round(float((tiers[ref] == tiers[low]).mean()), 4),
                     "same_model": round(float((ref == low).mean()), 4), "n": len(idx),
                     **{f"{k}_fp32": round(a[k], 4) for k in ("quality", "edge_share", "utility")},
                     **{f"{k}_low": round(b[k], 4) for k in ("quality", "edge_share", "utility")},
                     **{f"{k}_change": round(b[k] - a[k], 4) for k in ("quality", "edge_share", "utility")}}
    return res


def featurise_all(ds, settings, precisions: list[str], cache_dir: Path, progress: bool) -> tuple[dict, dict, dict]:
    """Feature matrices, pipeline specs and featurisation seconds per precision (fp32 first)."""
    from vlrouter.eval.featurize import featurize
    from vlrouter.features import FeaturePipeline

    X, specs, seconds = {}, {}, {}
    for p in ("fp32", *precisions):
        pipeline = FeaturePipeline(features_at(settings, p))
        started = time.perf_counter()
        X[p] = featurize(ds, pipeline, cache_dir=cache_dir, progress=progress)
        seconds[p] = round(time.perf_counter() - started, 1)
        specs[p] = pipeline
    return X, specs, seconds


def train_with_cli(args, settings, data: Path, ckpt: Path, cache_dir: Path) -> None:
    """``vlrouter train`` on fp32 features: the ``--config`` YAML with its features section at fp32."""
    raw = yaml.safe_load((args.config or ROOT / "configs" / "default.yaml").read_text()) or {}
    raw["features"] = features_at(settings, "fp32").model_dump(mode="json")
    cfg = args.work / "config-fp32.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "vlrouter", "train", "--data", str(data), "--out", str(ckpt), "--config", str(cfg),
           "--seed", str(args.seed), "--cache-dir", str(cache_dir), "--no-progress"]
    if args.max_epochs:
        cmd += ["--max-epochs", str(args.max_epochs)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def synthetic(args, settings) -> dict:
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.synthetic import make_synthetic_bench
    from vlrouter.router.mlp import MLPRouter
    from vlrouter.router.scenario import PRESETS

    data = args.work / f"synthetic-n{args.n}-seed{args.seed}"
    if not (data / "outcomes.jsonl").is_file():
        make_synthetic_bench(data, args.n, seed=args.seed, progress=not args.no_progress)
    cache = args.work / "features"
    ckpt = args.work / f"router-synthetic-fp32-seed{args.seed}"
    train_with_cli(args, settings, data, ckpt, cache)
    ds = load_dataset(data, seed=args.seed)
    X, pipelines, seconds = featurise_all(ds, settings, args.precisions, cache, not args.no_progress)
    test = ds.split("test")
    report = {"data": str(data), "n_test": len(test), "checkpoint": str(ckpt), "featurise_seconds": seconds,
              "specs": {p: pl.spec.describe() for p, pl in pipelines.items()}, "precisions": {}}
    for p in args.precisions:
        router = MLPRouter.load(ckpt, expected_spec=pipelines[p].spec)  # fp32 checkpoint, int8/bf16 features
        report["precisions"][p] = {"agreement": agreement(router, ds, X["fp32"], X[p], test, PRESETS),
                                   "embedding_cosine": block_cosines(router.spec, X["fp32"], X[p], test)}
    return report


def mathvista(args, settings) -> dict:
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.extras import ExtraFeatures
    from vlrouter.router.scenario import PRESETS
    from vlrouter.router.train import TrainConfig, train_router
    from vlrouter.router.utility import Outcomes

    ds_all = load_dataset(args.mathvista)
    train, dev, test = ds_all.split("train"), ds_all.split("dev"), ds_all.split("test")
    X, pipelines, seconds = featurise_all(ds_all, settings, args.precisions, args.work / "features",
                                          not args.no_progress)
    extras = ExtraFeatures.fit(ds_all, train)
    X = {p: np.hstack([X[p], extras.transform(ds_all, pipelines[p], progress=not args.no_progress)]) for p in X}
    spec = extras.spec(pipelines["fp32"].spec, pipelines["fp32"].spec.text_dim)
    scenarios = {"quality-only": (0.0, 1.0, 0.0), **PRESETS}
    report = {"data": str(args.mathvista), "n_test": len(test), "featurise_seconds": seconds, "setups": {}}
    for setup, names in (("pair", PAIR), ("all", ds_all.model_names)):
        ds = ds_all.select_models(names)
        config = TrainConfig(seed=args.seed, extra_scenarios={"quality-only": (0, 1, 0)},
                             **({"max_epochs": args.max_epochs} if args.max_epochs else {}))
        router, _ = train_router(X["fp32"], Outcomes.from_dataset(ds, train), train, dev, spec=spec,
                                 models=ds.model_dicts, config=config, progress=not args.no_progress)
        report["setups"][setup] = {p: {"agreement": agreement(router, ds, X["fp32"], X[p], test, scenarios),
                                       "embedding_cosine": block_cosines(spec, X["fp32"], X[p], test)}
                                   for p in args.precisions}
    return report


def print_report(name: str, per_precision: dict) -> None:
    for p, r in per_precision.items():
        cos = ", ".join(f"{b} {c['mean']:.4f} (min {c['min']:.4f})" for b, c in r["embedding_cosine"].items())
        print(f"\n[{name}] {p} vs fp32 features; embedding cosine: {cos}")
        print(f"{'scenario':<14}{'same tier':>10}{'same model':>11}{'quality':>18}{'edge share':>20}{'U change':>10}")
        for sc, a in r["agreement"].items():
            print(f"{sc:<14}{a['same_tier']:>10.1%}{a['same_model']:>11.1%}"
                  f"{a['quality_fp32']:>8.3f} -> {a['quality_low']:.3f}"
                  f"{a['edge_share_fp32']:>10.1%} -> {a['edge_share_low']:.1%}{a['utility_change']:>+10.4f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vlrouter.config import load_settings

    settings = load_settings(args.config)
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"precisions": args.precisions, "seed": args.seed, "synthetic": synthetic(args, settings)}
    print_report("synthetic, demo encoders", report["synthetic"]["precisions"])
    if not args.no_mathvista:
        if (args.mathvista / "outcomes.jsonl").is_file():
            report["mathvista"] = mathvista(args, settings)
            for setup, per in report["mathvista"]["setups"].items():
                print_report(f"MathVista test, {setup}", per)
        else:
            print(f"no MathVista routing data at {args.mathvista}: skipped")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
