"""``vlrouter calibrate``: set one preset's operating point in a checkpoint; and where eval keeps its curves.

``--min-quality F`` sets the preset's quality floor. The operating point is fitted under risk control
(``router.risk``) on the held-out predictions the checkpoint keeps (dev plus out-of-fold training
queries); a checkpoint without them gets a calibration set from ``--split``. The fit is then checked
on ``--split``. ``--target-edge-share`` and ``--energy-budget`` pin a tau on ``--split`` instead.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vlrouter.config import ConfigError


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Set one preset's quality floor, or pin its tau for an edge-share target or an energy budget."""
    from vlrouter.cli.offline import _dataset_features, _trained_router

    ds, X, pipeline = _dataset_features(args)
    router = _trained_router(args, pipeline.spec)
    if args.min_quality is not None:
        return _set_floor(args, ds, X, router)
    return _pin_tau(args, ds, X, router)


def _set_floor(args: argparse.Namespace, ds, X, router) -> int:
    from vlrouter.eval.floors import floor_report
    from vlrouter.router.scenario import parse_scenario
    from vlrouter.router.train import calibration_set
    from vlrouter.router.utility import Outcomes

    floor = float(args.min_quality)
    if not 0 < floor <= 1 or router.decision != "utility":
        raise ConfigError("--min-quality needs a share in (0, 1] and a router trained with --decision utility "
                          f"(got {args.min_quality}, decision {router.decision})")
    idx = ds.split(args.split)
    out = Outcomes.from_dataset(ds, ds.split("train"), refs=router.refs)
    floors = router.meta.setdefault("floors", {})
    floors["presets"] = {**router.floors, args.scenario: floor}
    floors["pinned"] = {k: v for k, v in router.pinned.items() if k != args.scenario}
    source = "the checkpoint's held-out predictions"
    if router.calibration is None:
        router.calibration = calibration_set(router, router.predict(X[idx], np.ones(3) / 3), out, idx)
        source = f"{args.split} (the checkpoint kept no held-out predictions)"
    scenario = parse_scenario(args.scenario)
    fit = router.floor_fit(scenario)
    thresholds = dict(router.thresholds)
    thresholds[args.scenario] = 0.0
    router.set_thresholds(thresholds)
    w_op, tau = router.operating_point(scenario)
    chosen = router.choose(router.predict(X[idx], w_op), tau)
    ref = int(np.argmax(out.quality[ds.split("train")].mean(0)))
    check = floor_report(out, idx, chosen, ref, floor, fit.status, ds.tiers,
                         {k: ds.has(k) for k in ("latency", "energy", "cost")})
    router.meta.setdefault("calibration", {})[args.scenario] = {"min_quality": floor, "fit": fit.as_dict(),
                                                                "check": {"split": args.split, **check}}
    router.save(args.router)
    print(f"{args.scenario}: floor {floor:.0%} fitted on {source} (n={fit.n}): {fit.status}, edge share "
          f"{fit.edge_share:.1%}, retention {fit.retention:.1%} (95% lower bound {fit.retention_low:.1%})")
    print(f"  on {args.split} (n={len(idx)}): retention {check['retention']:.1%} "
          f"[{check['retention_ci95'][0]:.1%}, {check['retention_ci95'][1]:.1%}], edge share "
          f"{check['edge_share']:.1%}: {check['verdict']}; saved to {args.router}")
    if fit.status == "all-edge":
        print("  the data says the edge keeps this floor for every query: the preset sends everything to the edge")
    elif fit.status == "reference":
        print("  only 'every query to the reference model' is certified to keep this floor: the preset sends "
              "every query there")
    return 0


def _pin_tau(args: argparse.Namespace, ds, X, router) -> int:
    from vlrouter.eval.evaluate import sweep
    from vlrouter.router.calibration import InfeasibleBudget, select_threshold

    curve = sweep(ds, X, router, args.scenario, args.split, points=201)
    unit = "J" if router.refs.energy_source == "energy" else "USD (cost stands in for energy)"
    try:
        best = select_threshold(curve, target_edge_share=args.target_edge_share, energy_budget=args.energy_budget)
    except InfeasibleBudget as exc:
        raise ConfigError(f"--energy-budget {args.energy_budget}: no threshold meets it on {args.split} "
                          f"(lowest mean is {exc.lowest:.4g} {unit})") from exc
    tau, share, energy, quality = best["tau"], best["edge_share"], best["energy"], best["quality"]
    thresholds = dict(router.thresholds)
    old = thresholds[args.scenario]
    thresholds[args.scenario] = tau
    router.set_thresholds(thresholds)
    floors = router.meta.setdefault("floors", {})
    floors["pinned"] = {**router.pinned, args.scenario: tau}
    router.meta.setdefault("calibration", {})[args.scenario] = {
        "tau": tau, "split": args.split, "edge_share": share, "mean_energy": energy, "quality": quality,
        "target_edge_share": args.target_edge_share, "energy_budget": args.energy_budget}
    router.save(args.router)
    print(f"{args.scenario}: tau {old:.3f} -> {tau:.3f} pinned on {args.split} (n={len(ds.split(args.split))}): "
          f"edge share {share:.1%}, quality {quality:.3f}, mean energy {energy:.4g} {unit}; saved to {args.router} "
          f"(the preset's floor no longer applies; `calibrate --min-quality` restores one)")
    return 0


def store_curves(router_dir: Path, report: dict, data: str) -> None:
    """Keep the last evaluation's floors and retention-vs-edge-share curves in the checkpoint's router.json."""
    path = router_dir / "router.json"
    meta = json.loads(path.read_text())
    meta["curve"] = {"data": data, "split": report["split"], "n": report["n"], "at": time.time(),
                     "reference": report["all_cloud_model"], "floors": report["floors"], "curves": report["curves"]}
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(path)
