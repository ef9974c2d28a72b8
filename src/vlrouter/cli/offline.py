"""The offline commands: ``route`` (one query), ``train``, ``calibrate`` and ``eval`` (routing datasets).

They run the configured feature pipeline in-process and call no backend; every router comes from
``vlrouter.router.factory``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vlrouter.cli.calibrate import cmd_calibrate, store_curves
from vlrouter.cli.preflight import check_model_paths
from vlrouter.cli.supervise import setup_logging
from vlrouter.config import ConfigError, Settings, load_settings


def _feature_settings(config: Path | None, why: str) -> Settings:
    """Settings for the offline commands that run the feature pipeline (no backend is needed)."""
    settings = load_settings(config)
    setup_logging("warning")
    if not settings.features.enabled:
        raise ConfigError(f"features.enabled is false in this config: {why}")
    check_model_paths(settings, backends=False)
    return settings


# ---------------------------------------------------------------- route
def _decode_images(paths: list[Path], settings: Settings) -> list:
    from vlrouter.media import MediaError, decode_image_bytes

    images = []
    for path in paths:
        try:
            images.append(decode_image_bytes(Path(path).read_bytes(), settings.images, str(path)))
        except (OSError, MediaError) as exc:
            raise ConfigError(f"--image {path}: {exc}") from exc
    return images


def _featurise_and_route(pipeline, router, text: str, images: list, scenario):
    """Features and decision for one query, after a warm-up query; also the router's own time (ms)."""
    import asyncio

    from vlrouter.router import RoutingInput

    async def run():
        from PIL import Image

        from vlrouter.media import DecodedImage

        warm = DecodedImage(b"warm-up", "image/png", Image.new("RGB", (64, 64), "grey"))
        await pipeline.extract("warm-up query, not cached for the real one", [warm])  # one-time torch set-up
        features = await pipeline.extract(text, images)
        t = time.perf_counter()
        decision = router.route(RoutingInput(text=text, n_images=len(images),
                                             image_pixels=sum(i.pixels for i in images), scenario=scenario,
                                             features=features.vector))
        router_ms = (time.perf_counter() - t) * 1000
        await pipeline.aclose()
        return features, decision, router_ms

    return asyncio.run(run())


def route_report(args: argparse.Namespace, images: list, pipeline, scenario, features, decision,
                 ms: dict[str, float]) -> dict:
    """The JSON report of ``vlrouter route``; ``ms`` holds the load, decode and router times."""
    from vlrouter.features.signals import SIGNALS

    timings = {"decode": ms["decode"], **{k: v for k, v in features.timings_ms.items() if k != "features_total"},
               "router": ms["router"]}
    timings["total"] = ms["decode"] + features.timings_ms["features_total"] + ms["router"]
    return {
        "query": {"words": len(args.text.split()), "images": [
            {"path": str(p), "width": i.image.width, "height": i.image.height, "bytes": len(i.data)}
            for p, i in zip(args.image or [], images, strict=True)]},
        "features": {"spec": pipeline.spec.to_dict(), "dim": int(features.vector.shape[0]),
                     "signals": {k: round(float(v), 4) for k, v in zip(SIGNALS, features.signals, strict=True)}},
        "scenario": scenario.as_dict(),
        "decision": {"tier": decision.tier, "policy": decision.policy, "threshold": decision.threshold,
                     "scores": decision.scores, "reason": decision.reason, "min_quality": decision.floor,
                     "why": decision.explanation},
        "timing_ms": {k: round(v, 3) for k, v in timings.items()},
        "load_ms": round(ms["load"], 1),
    }


def print_route_report(report: dict, spec, scenario, decision) -> None:
    """``vlrouter route``'s text output: one labelled line per part of the report."""
    imgs = ", ".join(f"{d['width']}x{d['height']} ({d['bytes'] / 1024:.0f} kB)" for d in report["query"]["images"])
    print(f"query     {report['query']['words']} words; images: {imgs or 'none'}")
    print(f"features  {spec.describe()} -> {report['features']['dim']}-d")
    print("signals   " + " ".join(f"{k}={v:g}" for k, v in report["features"]["signals"].items()))
    print(f"scenario  {scenario} (speed={scenario.speed:.2f} quality={scenario.quality:.2f} "
          f"energy={scenario.energy:.2f})")
    print(f"decision  {decision.tier.upper()} by {decision.policy}: {decision.reason}")
    print("scores    " + " ".join(f"{k}={v:g}" for k, v in decision.scores.items()))
    if decision.explanation:
        why = decision.explanation
        print(f"floor     {why['min_quality']:.0%} ({why['floor_status']}; quality weight "
              f"{why['quality_weight']:.3f}); predicted quality "
              + ", ".join(f"{t} {q:.3f}" for t, q in why["quality"].items()))
        print("why       " + ", ".join(f"{f['name']} {f['effect']:+.4f}" for f in why.get("top_features", []))
              + "   (gradient x input on the cloud's predicted quality gain)")
    print("timing ms " + " | ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in report["timing_ms"].items())
          + f"   (models loaded in {report['load_ms']:.0f} ms, not included)")


def cmd_route(args: argparse.Namespace) -> int:
    """Featurise one query, route it, and print what the router saw and decided."""
    from vlrouter.features import FeaturePipeline
    from vlrouter.router import ScenarioError, parse_scenario, router_from_settings

    settings = _feature_settings(args.config, "nothing to route on")
    try:
        scenario = parse_scenario(args.scenario or settings.routing.default_scenario)
    except ScenarioError as exc:
        raise ConfigError(f"--scenario: {exc}") from exc
    started = time.perf_counter()
    pipeline = FeaturePipeline(settings.features)
    router = router_from_settings(settings.routing, pipeline.spec)
    ms = {"load": (time.perf_counter() - started) * 1000}

    started = time.perf_counter()
    images = _decode_images(args.image or [], settings)
    ms["decode"] = (time.perf_counter() - started) * 1000
    features, decision, ms["router"] = _featurise_and_route(pipeline, router, args.text, images, scenario)
    report = route_report(args, images, pipeline, scenario, features, decision, ms)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_route_report(report, pipeline.spec, scenario, decision)
    return 0


# ---------------------------------------------------------------- datasets
def _dataset_features(args: argparse.Namespace):
    """Load a routing dataset and its fused features through the configured feature pipeline."""
    from vlrouter.eval.dataset import DatasetError, load_dataset
    from vlrouter.eval.featurize import featurize
    from vlrouter.features import FeaturePipeline

    settings = _feature_settings(args.config, "a router needs query features")
    try:
        ds = load_dataset(args.data, seed=args.seed)
    except (DatasetError, OSError) as exc:
        raise ConfigError(f"--data {args.data}: {exc}") from exc
    pipeline = FeaturePipeline(settings.features)
    X = featurize(ds, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    return ds, X, pipeline


def _log_dataset(args: argparse.Namespace):
    """The decision log as a routing dataset, featurised by the configured pipeline."""
    from vlrouter.eval.dataset import DatasetError, import_decision_log
    from vlrouter.eval.featurize import featurize
    from vlrouter.features import FeaturePipeline
    from vlrouter.telemetry.decision_log import log_location
    from vlrouter.telemetry.store_postgres import redact

    settings = _feature_settings(args.config, "a router needs query features")
    path = args.from_log if args.from_log != "-" else log_location(settings.log)
    shown = redact(str(path))  # a PostgreSQL URL may carry a password
    try:
        ds = import_decision_log(path, seed=args.seed, min_rows=10)
    except (DatasetError, OSError, ValueError) as exc:
        raise ConfigError(f"--from-log {shown}: {redact(str(exc))}") from exc
    pipeline = FeaturePipeline(settings.features)
    X = featurize(ds, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    return ds, X, pipeline, shown


def _group_dropout(text: str | None) -> tuple[float, ...] | None:
    from vlrouter.router.train import parse_group_dropout

    try:
        return None if text is None else parse_group_dropout(text)
    except ValueError as e:
        raise ConfigError(f"--group-dropout: {e}") from None


def _trained_router(args: argparse.Namespace, spec):
    """The checkpoint named by ``--router``, checked against the features of ``spec``."""
    from vlrouter.router import build_router

    return build_router("mlp", checkpoint=args.router, spec=spec, where="--router")


# ---------------------------------------------------------------- train, calibrate, eval
def cmd_train(args: argparse.Namespace) -> int:
    """Train the MLP router on a routing dataset or the decision log and write its checkpoint."""
    from vlrouter.router.train import TrainConfig, train_router
    from vlrouter.router.utility import Outcomes

    if (args.data is None) == (args.from_log is None):
        raise ConfigError("give exactly one of --data DIR or --from-log [PATH]")
    group_dropout = _group_dropout(args.group_dropout)  # checked before the features are computed
    if args.from_log is not None:
        ds, X, pipeline, source = _log_dataset(args)
    else:
        ds, X, pipeline = _dataset_features(args)
        source = args.data
    train_idx, dev_idx = ds.split("train"), ds.split("dev")
    if len(train_idx) == 0 or len(dev_idx) == 0:
        raise ConfigError(f"{source}: needs train and dev queries (found {len(train_idx)} / {len(dev_idx)})")
    outcomes = Outcomes.from_dataset(ds, train_idx)
    if outcomes.partial:
        counts = ", ".join(f"{m.name}={int(n)}" for m, n in zip(ds.models, outcomes.observed.sum(0), strict=True))
        explored = sum(bool(q.extra.get("explore")) for q in ds.queries)
        print(f"partial labels: one outcome per query ({counts}); {explored} explored; "
              "importance-weighted by 1/propensity")
    given = {"max_epochs": args.max_epochs, "beta": args.beta, "decision": args.decision,
             "group_dropout": group_dropout, "calibration_folds": args.folds}
    config = TrainConfig(seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    router, info = train_router(X, outcomes, train_idx, dev_idx, spec=pipeline.spec,
                                models=ds.model_dicts, config=config,
                                progress=not args.no_progress)
    router.meta["training"]["data"] = str(source)
    router.meta["training"]["synthetic"] = ds.has("expected_quality")  # a simulator's outcomes, not real models
    router.save(args.out)
    print(f"trained on {info['n_train']} queries ({info['epochs']} epochs, best {info['best_epoch']}, "
          f"ensemble of {info['ensemble']}, {info['seconds']}s); checkpoint: {args.out}")
    fits = router.meta["training"]["calibration"]["by_preset"]
    for name, row in router.meta["dev_metrics"].items():
        fit = fits.get(name, {})
        floor = (f"floor {fit['floor']:.0%} {fit['status']} (held-out retention {fit['retention']:.1%}, "
                 f"lower bound {fit['retention_low']:.1%}), " if "floor" in fit else f"tau={row['tau']:+.3f} ")
        print(f"  {name:<8} {floor}dev: edge {row['edge_share']:.1%} quality {row['quality']:.3f} "
              f"U {row['utility']:.3f}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint against the baselines on a split; optionally write JSON and a plot."""
    from vlrouter.eval.evaluate import evaluate, sweep
    from vlrouter.eval.report import curve_plot, format_table, pareto_plot

    ds, X, pipeline = _dataset_features(args)
    router = _trained_router(args, pipeline.spec)
    report = evaluate(ds, X, router, split=args.split, seed=args.seed)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        pareto_plot(report, sweep(ds, X, router, "quality", args.split), args.plot)
        print(f"wrote {args.plot}")
    if args.curve_plot:
        curve_plot(report, args.curve_plot, scenario=args.curve_scenario)
        print(f"wrote {args.curve_plot}")
    store_curves(args.router, report, str(args.data))
    print(f"stored the floors and curves with the checkpoint ({args.router / 'router.json'}: curve)")
    return 0


# ---------------------------------------------------------------- parsers
def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", type=Path, required=required, help="routing dataset directory (see README)")
    p.add_argument("--config", type=Path, help="YAML settings whose features: section embeds the queries")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, training and random baselines")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/vlrouter/features"),
                   help="where fused features are cached (default .cache/vlrouter/features)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``route``, ``train``, ``calibrate`` and ``eval``."""
    route = sub.add_parser(
        "route", help="featurise one query and show the routing decision (no model is called)",
        description="Run the gateway's feature pipeline and router on one query and print the features summary, "
                    "the decision, its scores and a timing breakdown (decode, signals, image encoder, text "
                    "encoder, router), measured after a warm-up query.")
    route.add_argument("--text", required=True, help="the question")
    route.add_argument("--image", action="append", type=Path, help="image file (repeatable)")
    route.add_argument("--scenario", help="fast | quality | energy | JSON weights | speed=..,quality=..")
    route.add_argument("--config", type=Path, help="YAML settings file (default: configs/default.yaml)")
    route.add_argument("--json", action="store_true", help="print JSON instead of text")
    route.set_defaults(func=cmd_route)

    train = sub.add_parser("train", help="train the scenario-conditioned MLP router on a routing dataset or the log",
                           description="Embed the dataset's queries with the configured feature pipeline, train "
                                       "the MLP router on train (early stopping on dev), calibrate tau per "
                                       "scenario on dev, and write a checkpoint directory. With --from-log, the "
                                       "dataset is the gateway's decision log: answered requests whose content "
                                       "was logged (log.log_content: true) and that got POST /v1/feedback scores; "
                                       "only the serving model's outcome is known per request, so training is "
                                       "importance-weighted by the logged propensity (see routing.explore).")
    _data_args(train, required=False)
    train.add_argument("--from-log", nargs="?", const="-", metavar="PATH|URL",
                       help="train from a decision log: a SQLite path or postgresql:// URL (default: log.url or "
                            "log.path of --config)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    # unset options keep TrainConfig's defaults (router/train.py), so the CLI trains what the docs describe
    train.add_argument("--max-epochs", type=int, help="epoch cap per net, early stopping on dev (default 300)")
    train.add_argument("--beta", type=float, help="soft-label sharpness (default 10)")
    train.add_argument("--decision", choices=["utility", "policy"],
                       help="utility (default): cloud when the predicted cloud-minus-edge utility margin >= tau; "
                            "policy: ECVL-Router's p_cloud >= tau on the policy head")
    train.add_argument("--group-dropout", metavar="P[,P...]",
                       help="per-row probability of blanking a whole feature block in training; several "
                            "comma-separated candidates train one net each and keep the lowest dev loss "
                            "(default 0.3,0.5,0.8)")
    train.add_argument("--folds", type=int,
                       help="cross-fitting runs: out-of-fold predictions calibrate tau and the runs join the "
                            "ensemble (default 5; 0 trains one net and calibrates on dev alone)")
    train.set_defaults(func=cmd_train)

    cal = sub.add_parser("calibrate", help="set a scenario's quality floor, edge share or energy budget",
                         description="Set one preset's operating point in a checkpoint. --min-quality F: the "
                                     "floor (share of the strongest model's quality to keep), fitted under risk "
                                     "control on the checkpoint's held-out predictions (router.risk) and checked "
                                     "on --split. --target-edge-share / --energy-budget instead pin the tau whose "
                                     "edge share on --split is closest to the target, or the best-quality tau "
                                     "whose mean energy stays within the budget (joules; cost where the data has "
                                     "no energy); a pinned preset ignores its floor until --min-quality is set.")
    _data_args(cal)
    cal.add_argument("--router", type=Path, required=True, help="checkpoint directory (updated in place)")
    cal.add_argument("--scenario", choices=["fast", "quality", "energy"], default="quality")
    cal.add_argument("--split", default="dev", choices=["train", "dev"], help="never calibrate on test")
    goal = cal.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-edge-share", type=float, help="e.g. 0.8")
    goal.add_argument("--energy-budget", type=float, help="mean joules per query")
    goal.add_argument("--min-quality", type=float, help="quality floor, e.g. 0.9 (keep >= 90%% of the strongest)")
    cal.set_defaults(func=cmd_calibrate)

    ev = sub.add_parser("eval", help="evaluate a router against baselines on the test split",
                        description="Per scenario and per policy: edge share, quality (APSP), quality retention, "
                                    "latency and energy reduction vs all-cloud, cost, Rank Score (beta 0.1), RCS.")
    _data_args(ev)
    ev.add_argument("--router", type=Path, required=True, help="checkpoint directory")
    ev.add_argument("--split", default="test", choices=["dev", "test"])
    ev.add_argument("--json", type=Path, help="write the report as JSON")
    ev.add_argument("--plot", type=Path, help="write a Pareto plot (PNG)")
    ev.add_argument("--curve-plot", type=Path, help="write the retention-vs-edge-share plot (PNG)")
    ev.add_argument("--curve-scenario", default="quality", choices=["fast", "quality", "energy"],
                    help="whose weights rank the router's curve in --curve-plot (default quality)")
    ev.set_defaults(func=cmd_eval)
