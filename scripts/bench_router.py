#!/usr/bin/env python
"""Benchmark the MLP router: scoring latency per query (batch 1 and 64) and training time on 2,000 queries.

Feature dimensions are those of the production pipeline (SigLIP ViT-B/16 768 + bge-small 384 +
20 signals = 1172); features and outcomes are random (timing does not depend on them). Training runs
a fixed 100 epochs per net (no early stopping) with the defaults: one main net per group-dropout
candidate (3) and 5 cross-fitting runs, so the scored router is the shipped shape: an ensemble of
6 nets, expected-utility decision.
Usage: scripts/bench_router.py [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from vlrouter._torch_compat import import_torch
from vlrouter.eval.dataset import ModelInfo, Query, RoutingDataset
from vlrouter.features.signals import SIGNALS
from vlrouter.features.spec import FeatureSpec
from vlrouter.router.train import TrainConfig, train_router
from vlrouter.router.utility import Outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--n", type=int, default=2000, help="training queries (default 2000)")
    args = parser.parse_args()
    torch = import_torch()
    rng = np.random.default_rng(0)
    spec = FeatureSpec("open_clip:ViT-B-16-SigLIP", 768, "hf_text:bge-small-en-v1.5", 384, SIGNALS)
    n, models = args.n, [ModelInfo("edge-small", "edge"), ModelInfo("edge-base", "edge"), ModelInfo("cloud", "cloud")]
    X = rng.normal(size=(n, spec.dim)).astype(np.float32)
    quality = (rng.random((n, 3)) < [0.4, 0.5, 0.75]).astype(float)
    lat = rng.lognormal(np.log([0.3, 0.45, 1.4]), 0.2, (n, 3))
    energy = rng.lognormal(np.log([5, 7, 35]), 0.1, (n, 3))
    cost = np.tile([2e-5, 5e-5, 2e-3], (n, 1))
    splits = np.array(["train"] * int(0.8 * n) + ["dev"] * (n - int(0.8 * n)))
    ds = RoutingDataset(models, [Query(str(i), "", None, str(s)) for i, s in enumerate(splits)], quality, cost,
                        lat, energy)
    train, dev = ds.split("train"), ds.split("dev")
    started = time.perf_counter()
    router, info = train_router(X, Outcomes.from_dataset(ds, train), train, dev, spec=spec,
                                models=ds.model_dicts,
                                config=TrainConfig(max_epochs=100, patience=1000), progress=False)
    train_s = time.perf_counter() - started
    # one main net per group-dropout candidate, then the cross-fitting nets
    trained = len(info["group_dropout"]["dev_loss"]) + info["calibration"]["folds"]
    w = np.array([0.1, 0.8, 0.1])
    timings = {}
    for batch in (1, 64):
        x = X[:batch]
        for _ in range(20):
            router.predict(x, w)
        reps = 2000 if batch == 1 else 300
        started = time.perf_counter()
        for _ in range(reps):
            router.choose(router.predict(x, w), 0.0)
        timings[batch] = (time.perf_counter() - started) / reps / batch * 1000
    result = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "feature_dim": spec.dim, "models": len(models), "ensemble": len(router.nets),
        "score_ms_per_query": {"batch_1": round(timings[1], 4), "batch_64": round(timings[64], 4)},
        "train_seconds": {"n_queries": n, "epochs_per_net": info["epochs"], "nets_trained": trained,
                          "total": round(train_s, 2), "per_net_epoch": round(train_s / info["epochs"] / trained, 3)},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
