"""Command line: ``vlrouter serve`` (the gateway) and ``vlrouter serve-model`` (one local VLM).

Run ``vlrouter COMMAND --help`` for the options of each command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pydantic_settings import PydanticBaseSettingsSource

from vlrouter.config import (
    ConfigError,
    LocalBackendConfig,
    LogConfig,
    OpenAIBackendConfig,
    RoutingConfig,
    ServerConfig,
    Settings,
    load_settings,
)

log = logging.getLogger("vlrouter")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe is noise


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


def _check_model_paths(settings: Settings, *, backends: bool = True) -> None:
    problems = []
    for name, b in settings.backends.items() if backends else ():
        path = b.model_path if isinstance(b, LocalBackendConfig) else (
            b.standin_model if isinstance(b, OpenAIBackendConfig) and not b.base_url else None)
        if path is not None and not (Path(path) / "config.json").is_file():
            field = "model_path" if isinstance(b, LocalBackendConfig) else "standin_model"
            problems.append(f"  backends.{name}.{field}: no model at {path} "
                            "(build the demo models: python scripts/make_demo_models.py)")
    if settings.features.enabled:
        for field in ("image_encoder", "text_encoder"):
            enc = getattr(settings.features, field)
            if enc is not None and not Path(enc.path).exists():
                problems.append(f"  features.{field}.path: no model at {enc.path} "
                                "(build the demo models: python scripts/make_demo_models.py)")
    ckpt = settings.routing.checkpoint
    if backends and ckpt is not None and not (Path(ckpt) / "router.json").is_file():
        problems.append(f"  routing.checkpoint: no router at {ckpt} (train one: vlrouter train --data DIR --out PATH)")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def start_standins(settings: Settings) -> tuple[list[subprocess.Popen], frozenset[str]]:
    """For each OpenAI backend without a base URL, serve its stand-in model on a loopback port."""
    procs, names = [], set()
    for name, b in settings.backends.items():
        if not isinstance(b, OpenAIBackendConfig) or b.base_url:
            continue
        port = free_port()
        cmd = [sys.executable, "-m", "vlrouter", "serve-model", "--model", str(b.standin_model),
               "--name", b.model, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", settings.server.log_level]
        log.warning("backend %s (tier %s): no base_url set (VLROUTER_CLOUD_BASE_URL); starting a LOCAL STAND-IN, "
                    "serve-model %s on 127.0.0.1:%d. Its answers do not come from a cloud model.",
                    name, b.tier, b.standin_model, port)
        proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent)
        procs.append(proc)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        except (RuntimeError, TimeoutError):
            stop_processes(procs)
            raise
        b.base_url = f"http://127.0.0.1:{port}/v1"
        names.add(name)
    return procs, frozenset(names)


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: have the kernel SIGTERM a stand-in when the gateway dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


def _run_uvicorn(app, settings: Settings) -> None:
    import uvicorn

    # uvicorn drains in-flight requests on SIGTERM, restores the previous handler and re-raises the
    # signal; with this handler that ends as SystemExit(0), so callers' `finally` blocks still run.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level=settings.server.log_level,
                timeout_graceful_shutdown=int(settings.server.graceful_shutdown_s))


def cmd_serve(args: argparse.Namespace) -> int:
    server = {k: v for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level)) if v}
    settings = load_settings(args.config, **({"server": server} if server else {}))
    _setup_logging(settings.server.log_level)
    _check_model_paths(settings)
    from vlrouter.api.app import build_app

    procs, standins = start_standins(settings)
    try:
        _run_uvicorn(build_app(settings, standins=standins), settings)
    finally:
        stop_processes(procs)
    return 0


class ModelServerSettings(Settings):
    """serve-model is configured by its flags only (no YAML, no VLROUTER_* env)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource, *args, **kwargs):
        return (init_settings,)


def cmd_serve_model(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    name = args.name or Path(args.model).name
    keys = [args.api_key] if args.api_key else []
    settings = ModelServerSettings(
        server=ServerConfig(host=args.host, port=args.port, log_level=args.log_level, api_keys=keys),
        routing=RoutingConfig(fallback=False),
        log=LogConfig(enabled=False),
        backends={name: LocalBackendConfig(kind="local", tier="edge", model_path=Path(args.model),
                                           served_name=name, device=args.device, threads=args.threads)},
    )
    _check_model_paths(settings)
    from vlrouter.api.app import build_app

    _run_uvicorn(build_app(settings), settings)
    return 0


def _feature_settings(config: Path | None, why: str) -> Settings:
    """Settings for the offline commands that run the feature pipeline (no backend is needed)."""
    settings = load_settings(config)
    _setup_logging("warning")
    if not settings.features.enabled:
        raise ConfigError(f"features.enabled is false in this config: {why}")
    _check_model_paths(settings, backends=False)
    return settings


def cmd_route(args: argparse.Namespace) -> int:
    """Featurise one query, route it, and print what the router saw and decided."""
    import asyncio
    import json

    from vlrouter.features import FeaturePipeline
    from vlrouter.features.signals import SIGNALS
    from vlrouter.media import MediaError, decode_image_bytes
    from vlrouter.router import RoutingInput, ScenarioError, build_router, parse_scenario

    settings = _feature_settings(args.config, "nothing to route on")
    try:
        scenario = parse_scenario(args.scenario or settings.routing.default_scenario)
    except ScenarioError as exc:
        raise ConfigError(f"--scenario: {exc}") from exc
    started = time.perf_counter()
    pipeline = FeaturePipeline(settings.features)
    router = build_router(settings.routing.policy)
    load_ms = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    images = []
    for path in args.image or []:
        try:
            images.append(decode_image_bytes(Path(path).read_bytes(), settings.images, str(path)))
        except (OSError, MediaError) as exc:
            raise ConfigError(f"--image {path}: {exc}") from exc
    decode_ms = (time.perf_counter() - started) * 1000

    async def run():
        from PIL import Image

        from vlrouter.media import DecodedImage

        warm = DecodedImage(b"warm-up", "image/png", Image.new("RGB", (64, 64), "grey"))
        await pipeline.extract("warm-up query, not cached for the real one", [warm])  # one-time torch set-up
        features = await pipeline.extract(args.text, images)
        t = time.perf_counter()
        decision = router.route(RoutingInput(text=args.text, n_images=len(images),
                                             image_pixels=sum(i.pixels for i in images), scenario=scenario,
                                             features=features.vector))
        router_ms = (time.perf_counter() - t) * 1000
        await pipeline.aclose()
        return features, decision, router_ms

    features, decision, router_ms = asyncio.run(run())
    timings = {"decode": decode_ms, **{k: v for k, v in features.timings_ms.items() if k != "features_total"},
               "router": router_ms}
    timings["total"] = decode_ms + features.timings_ms["features_total"] + router_ms
    report = {
        "query": {"words": len(args.text.split()), "images": [
            {"path": str(p), "width": i.image.width, "height": i.image.height, "bytes": len(i.data)}
            for p, i in zip(args.image or [], images, strict=True)]},
        "features": {"spec": pipeline.spec.to_dict(), "dim": int(features.vector.shape[0]),
                     "signals": {k: round(float(v), 4) for k, v in zip(SIGNALS, features.signals, strict=True)}},
        "scenario": scenario.as_dict(),
        "decision": {"tier": decision.tier, "policy": decision.policy, "threshold": decision.threshold,
                     "scores": decision.scores, "reason": decision.reason},
        "timing_ms": {k: round(v, 3) for k, v in timings.items()},
        "load_ms": round(load_ms, 1),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    imgs = ", ".join(f"{d['width']}x{d['height']} ({d['bytes'] / 1024:.0f} kB)" for d in report["query"]["images"])
    print(f"query     {report['query']['words']} words; images: {imgs or 'none'}")
    print(f"features  {pipeline.spec.describe()} -> {report['features']['dim']}-d")
    print("signals   " + " ".join(f"{k}={v:g}" for k, v in report["features"]["signals"].items()))
    print(f"scenario  {scenario} (speed={scenario.speed:.2f} quality={scenario.quality:.2f} "
          f"energy={scenario.energy:.2f})")
    print(f"decision  {decision.tier.upper()} by {decision.policy}: {decision.reason}")
    print("scores    " + " ".join(f"{k}={v:g}" for k, v in decision.scores.items()))
    print("timing ms " + " | ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in report["timing_ms"].items())
          + f"   (models loaded in {load_ms:.0f} ms, not included)")
    return 0


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


def _load_router(path: Path, spec):
    from vlrouter.features import FeatureSpecMismatch
    from vlrouter.router.mlp import MLPRouter

    try:
        return MLPRouter.load(path, expected_spec=spec)
    except (OSError, ValueError, FeatureSpecMismatch) as exc:
        raise ConfigError(f"--router {path}: {exc}") from exc


def _log_dataset(args: argparse.Namespace):
    """The decision log as a routing dataset, featurised by the configured pipeline."""
    from vlrouter.eval.dataset import DatasetError, import_decision_log
    from vlrouter.eval.featurize import featurize
    from vlrouter.features import FeaturePipeline

    settings = _feature_settings(args.config, "a router needs query features")
    path = args.from_log if args.from_log != Path("-") else settings.log.path
    try:
        ds = import_decision_log(path, seed=args.seed, min_rows=10)
    except (DatasetError, OSError) as exc:
        raise ConfigError(f"--from-log {path}: {exc}") from exc
    pipeline = FeaturePipeline(settings.features)
    X = featurize(ds, pipeline, cache_dir=args.cache_dir, progress=not args.no_progress)
    return ds, X, pipeline, path


def _group_dropout(text: str | None) -> tuple[float, ...] | None:
    from vlrouter.router.train import parse_group_dropout

    try:
        return None if text is None else parse_group_dropout(text)
    except ValueError as e:
        raise ConfigError(f"--group-dropout: {e}") from None


def cmd_train(args: argparse.Namespace) -> int:
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
    router.save(args.out)
    print(f"trained on {info['n_train']} queries ({info['epochs']} epochs, best {info['best_epoch']}, "
          f"ensemble of {info['ensemble']}, {info['seconds']}s); checkpoint: {args.out}")
    for name, row in router.meta["dev_metrics"].items():
        print(f"  dev {name:<8} tau={row['tau']:+.3f} edge={row['edge_share']:.1%} quality={row['quality']:.3f} "
              f"U={row['utility']:.3f}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from vlrouter.eval.evaluate import sweep

    ds, X, pipeline = _dataset_features(args)
    router = _load_router(args.router, pipeline.spec)
    curve = sweep(ds, X, router, args.scenario, args.split, points=201)
    unit = "J" if router.refs.energy_source == "energy" else "USD (cost stands in for energy)"
    if args.target_edge_share is not None:
        best = min(curve, key=lambda p: (abs(p["edge_share"] - args.target_edge_share), -p["quality"]))
    else:
        feasible = [p for p in curve if p["energy"] <= args.energy_budget]
        if not feasible:
            raise ConfigError(f"--energy-budget {args.energy_budget}: no threshold meets it on {args.split} "
                              f"(lowest mean is {min(p['energy'] for p in curve):.4g} {unit})")
        best = max(feasible, key=lambda p: (p["quality"], p["edge_share"]))
    tau, share, energy, quality = best["tau"], best["edge_share"], best["energy"], best["quality"]
    thresholds = dict(router.thresholds)
    old = thresholds[args.scenario]
    thresholds[args.scenario] = tau
    router.set_thresholds(thresholds)
    router.meta.setdefault("calibration", {})[args.scenario] = {
        "tau": tau, "split": args.split, "edge_share": share, "mean_energy": energy, "quality": quality,
        "target_edge_share": args.target_edge_share, "energy_budget": args.energy_budget}
    router.save(args.router)
    print(f"{args.scenario}: tau {old:.3f} -> {tau:.3f} on {args.split} (n={len(ds.split(args.split))}): "
          f"edge share {share:.1%}, "
          f"quality {quality:.3f}, mean energy {energy:.4g} {unit}; saved to {args.router}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from vlrouter.eval.evaluate import evaluate, sweep
    from vlrouter.eval.report import format_table, pareto_plot

    ds, X, pipeline = _dataset_features(args)
    router = _load_router(args.router, pipeline.spec)
    report = evaluate(ds, X, router, split=args.split, seed=args.seed)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if args.plot:
        pareto_plot(report, sweep(ds, X, router, "quality", args.split), args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from vlrouter.telemetry.decision_log import read_rows
    from vlrouter.telemetry.log_tools import export_rows, format_stats, parse_time, stats

    path = args.db
    if path is None:
        path = load_settings(args.config).log.path
    try:
        since, until = parse_time(args.since), parse_time(args.until)
        rows = read_rows(path, since=since, until=until)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if args.log_command == "stats":
        report = stats(rows, since, until)
        print(json.dumps(report, indent=2) if args.json else format_stats(report))
        return 0
    try:
        n = export_rows(rows, args.out, args.format)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if args.out is not None:
        print(f"exported {n} rows from {path} to {args.out} ({args.format})", file=sys.stderr)
    return 0


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", type=Path, required=required, help="routing dataset directory (see README)")
    p.add_argument("--config", type=Path, help="YAML settings whose features: section embeds the queries")
    p.add_argument("--seed", type=int, default=0, help="seed for splits, training and random baselines")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/vlrouter/features"),
                   help="where fused features are cached (default .cache/vlrouter/features)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlrouter",
        description="Edge-cloud routing inference server for vision-language models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run the routing gateway (OpenAI-compatible API, /infer, /metrics)",
        description="Run the gateway. Settings come from --config (default configs/default.yaml), then "
                    "VLROUTER_* environment variables (nested with __, e.g. VLROUTER_SERVER__PORT), then these "
                    "flags. With no cloud URL (VLROUTER_CLOUD_BASE_URL), a local stand-in for the cloud tier "
                    "is started on another loopback port and labelled as such.")
    serve.add_argument("--config", type=Path, help="YAML settings file (default: configs/default.yaml)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    sm = sub.add_parser(
        "serve-model", help="serve one local VLM over the OpenAI API (an edge box, or a cloud stand-in)",
        description="Serve one local transformers VLM (a folder with config.json, processor and weights) over "
                    "the same OpenAI-compatible API as the gateway.")
    sm.add_argument("--model", required=True, help="local model folder (never downloaded)")
    sm.add_argument("--name", help="model name clients use (default: the folder name)")
    sm.add_argument("--host", default="127.0.0.1")
    sm.add_argument("--port", type=int, default=8001)
    sm.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sm.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    sm.add_argument("--api-key", default=os.environ.get("VLROUTER_SERVE_MODEL_API_KEY"),
                    help="require this bearer key (default: $VLROUTER_SERVE_MODEL_API_KEY, else none)")
    sm.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    sm.set_defaults(func=cmd_serve_model)

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
    train.add_argument("--from-log", type=Path, nargs="?", const=Path("-"), metavar="PATH",
                       help="train from a decision log (default path: log.path of --config)")
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

    cal = sub.add_parser("calibrate", help="set a scenario's threshold from dev data (edge share or energy budget)",
                         description="Set one scenario's tau in a checkpoint from dev data: the tau whose edge "
                                     "share is closest to --target-edge-share, or the best-quality tau whose mean "
                                     "energy stays within --energy-budget (joules; cost where the data has no "
                                     "energy).")
    _data_args(cal)
    cal.add_argument("--router", type=Path, required=True, help="checkpoint directory (updated in place)")
    cal.add_argument("--scenario", choices=["fast", "quality", "energy"], default="quality")
    cal.add_argument("--split", default="dev", choices=["train", "dev"], help="never calibrate on test")
    goal = cal.add_mutually_exclusive_group(required=True)
    goal.add_argument("--target-edge-share", type=float, help="e.g. 0.8")
    goal.add_argument("--energy-budget", type=float, help="mean joules per query")
    cal.set_defaults(func=cmd_calibrate)

    ev = sub.add_parser("eval", help="evaluate a router against baselines on the test split",
                        description="Per scenario and per policy: edge share, quality (APSP), quality retention, "
                                    "latency and energy reduction vs all-cloud, cost, Rank Score (beta 0.1), RCS.")
    _data_args(ev)
    ev.add_argument("--router", type=Path, required=True, help="checkpoint directory")
    ev.add_argument("--split", default="test", choices=["dev", "test"])
    ev.add_argument("--json", type=Path, help="write the report as JSON")
    ev.add_argument("--plot", type=Path, help="write a Pareto plot (PNG)")
    ev.set_defaults(func=cmd_eval)

    lg = sub.add_parser("log", help="read the decision log: export rows or summarise them",
                        description="Read the gateway's decision log (SQLite). Times: ISO 8601 (2026-11-24 or "
                                    "2026-11-24T08:00), a Unix timestamp, or a span back from now (30m, 6h, 7d).")
    lg_sub = lg.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    for name, text in (("export", "write the rows (with their latest feedback score) as JSON lines or Parquet"),
                       ("stats", "edge share, p50/p99 latency and joules per request by tier and scenario")):
        p = lg_sub.add_parser(name, help=text, description=text)
        p.add_argument("--db", type=Path, help="decision log path (default: log.path of --config)")
        p.add_argument("--config", type=Path, help="YAML settings file (default: configs/default.yaml)")
        p.add_argument("--since", help="first time to include")
        p.add_argument("--until", help="time to stop before")
        if name == "export":
            p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
            p.add_argument("--out", type=Path, help="output file (jsonl default: stdout)")
        else:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=cmd_log)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"vlrouter: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
