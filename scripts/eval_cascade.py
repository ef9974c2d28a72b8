#!/usr/bin/env python
"""The routing cascade on the SYNTHETIC bench: how often the image encoder is skipped, and what it costs.

Generates the synthetic bench (``--n`` queries, ``--seed``), embeds it with the configured encoders,
trains the MLP router (TrainConfig defaults; training calibrates the cascade band on dev, see
``vlrouter/router/cascade.py``) and reports on the TEST split, per preset: the share of queries with
images whose decision needed the image encoder, the agreement of the cascade's decisions with the
full-feature router's, and the realised quality and edge share of both. The real routing datasets in
``../shared/data`` carry no images (``image: null``), so the cascade has nothing to skip there.

    python scripts/eval_cascade.py                      # n=2000, seed 0 (~2 min on 2 cores)
    python scripts/eval_cascade.py --n 4000 --seed 3 --json cascade.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def evaluate_cascade(ds, X, router, band: float, split: str = "test") -> dict:
    """Per preset: image-encoder share, agreement with the full router, quality and edge share of both."""
    from vlrouter.router.cascade import cascade_margins
    from vlrouter.router.scenario import PRESETS
    from vlrouter.router.utility import Outcomes

    idx = ds.split(split)
    has_image = np.abs(X[idx][:, router.spec.slices()["image"]]).sum(1) > 0
    outcomes = Outcomes.from_dataset(ds, ds.split("train"))
    out = {}
    for name, w in PRESETS.items():
        w = np.array(w, np.float32)
        w_op, tau = router.operating_point_for(name, w)
        w_op = np.asarray(w_op, np.float32)
        full, cheap = cascade_margins(router, X[idx], w_op)
        first = has_image & (np.abs(cheap - tau) >= band) & (band > 0)
        margin = np.where(first, cheap, full)
        pred_full = router.predict(X[idx], w_op)
        chosen_full = router.choose(pred_full, tau)
        sl = router.spec.slices()["image"]
        Xc = X[idx].copy()
        Xc[first, sl] = router.mean[sl]  # first-stage queries were decided without their image
        chosen_cascade = router.choose(router.predict(Xc, w_op), tau)
        full_sum = outcomes.summary(chosen_full, idx, w, router.tiers)
        cas_sum = outcomes.summary(chosen_cascade, idx, w, router.tiers)
        out[name] = {
            "n_test": len(idx), "n_with_images": int(has_image.sum()),
            "image_encoder_share": round(float(1 - first[has_image].mean()), 4),
            "tier_agreement": round(float(((margin >= tau) == (full >= tau))[has_image].mean()), 4),
            "full": {k: round(full_sum[k], 4) for k in ("quality", "edge_share", "utility")},
            "cascade": {k: round(cas_sum[k], 4) for k in ("quality", "edge_share", "utility")},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="bench size (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="YAML settings whose features: section embeds queries")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/vlrouter/features"))
    parser.add_argument("--target", type=float, help="recalibrate the band on dev for this agreement "
                        "(default: the band training calibrated, for 98%%)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from vlrouter.config import load_settings
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.featurize import featurize
    from vlrouter.eval.synthetic import make_synthetic_bench
    from vlrouter.features import FeaturePipeline
    from vlrouter.router.train import TrainConfig, train_router
    from vlrouter.router.utility import Outcomes

    with tempfile.TemporaryDirectory() as tmp:
        path = make_synthetic_bench(Path(tmp) / "bench", args.n, seed=args.seed, progress=not args.no_progress)
        ds = load_dataset(path)
        pipeline = FeaturePipeline(load_settings(args.config).features)
        X = featurize(ds, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    train, dev = ds.split("train"), ds.split("dev")
    router, _ = train_router(X, Outcomes.from_dataset(ds, train), train, dev, spec=pipeline.spec,
                             models=ds.model_dicts, config=TrainConfig(seed=args.seed), progress=not args.no_progress)
    cal = router.meta["cascade"]
    if args.target is not None:
        from vlrouter.router.cascade import calibrate_band

        cal = router.meta["cascade"] = calibrate_band(router, X[dev], target=args.target)
    report = {"bench": {"n": args.n, "seed": args.seed, "synthetic": True}, "features": pipeline.spec.describe(),
              "calibration_on_dev": cal, "test": evaluate_cascade(ds, X, router, router.cascade_band)}
    print(f"SYNTHETIC bench n={args.n} seed={args.seed}; features {report['features']}")
    print(f"band calibrated on dev: {cal['band']:.4f} (target agreement {cal['target']:.0%}, "
          f"{cal['n']} dev queries with images)")
    print(f"{'preset':<8} {'image enc.':>10} {'agreement':>9} {'quality full/cascade':>21} {'edge full/cascade':>18}")
    for name, row in report["test"].items():
        f, c = row["full"], row["cascade"]
        print(f"{name:<8} {row['image_encoder_share']:>10.1%} {row['tier_agreement']:>9.1%} "
              f"{f['quality']:>10.3f} / {c['quality']:.3f} {f['edge_share']:>10.1%} / {c['edge_share']:.1%}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
