"""``vlrouter serve`` (the routing gateway) and ``vlrouter serve-model`` (one local VLM)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic_settings import PydanticBaseSettingsSource

from vlrouter.cli.preflight import check_model_paths
from vlrouter.cli.supervise import (
    check_fd,
    run_uvicorn,
    run_workers,
    setup_logging,
    start_standins,
    stop_processes,
)
from vlrouter.config import (
    LocalBackendConfig,
    LogConfig,
    RoutingConfig,
    ServerConfig,
    Settings,
    load_settings,
)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the gateway, with a local stand-in for each cloud backend that has no URL."""
    check_fd(args.fd)
    server = {k: v for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level),
                                ("workers", args.workers)) if v is not None}
    overrides = {"server": server} if server else {}
    settings = load_settings(args.config, **overrides)
    setup_logging(settings.server.log_level)
    check_model_paths(settings)
    from vlrouter.api.app import build_app

    procs, standins = start_standins(settings)
    try:
        if settings.server.workers > 1:
            run_workers(settings, args.config, overrides, standins, fd=args.fd)
        else:
            run_uvicorn(build_app(settings, standins=standins), settings, fd=args.fd)
    finally:
        stop_processes(procs)
    return 0


class ModelServerSettings(Settings):
    """serve-model is configured by its flags only (no YAML, no VLROUTER_* env)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings: PydanticBaseSettingsSource, *args, **kwargs):
        return (init_settings,)


def cmd_serve_model(args: argparse.Namespace) -> int:
    """Serve one local VLM over the OpenAI-compatible API, configured by the flags alone."""
    check_fd(args.fd)
    setup_logging(args.log_level)
    name = args.name or Path(args.model).name
    keys = [args.api_key] if args.api_key else []
    settings = ModelServerSettings(
        server=ServerConfig(host=args.host, port=args.port, log_level=args.log_level, api_keys=keys),
        routing=RoutingConfig(fallback=False),
        log=LogConfig(enabled=False),
        backends={name: LocalBackendConfig(kind="local", tier="edge", model_path=Path(args.model),
                                           served_name=name, device=args.device, threads=args.threads)},
    )
    check_model_paths(settings)
    from vlrouter.api.app import build_app

    run_uvicorn(build_app(settings), settings, fd=args.fd)
    return 0


FD_HELP = ("serve on an inherited socket that is already bound (file descriptor N, as systemd socket activation, a "
           "supervisor or a test harness passes it) instead of binding --host/--port")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``serve`` and ``serve-model``."""
    serve = sub.add_parser(
        "serve", help="run the routing gateway (OpenAI-compatible API, /infer, /metrics)",
        description="Run the gateway. Settings come from --config (default configs/default.yaml), then "
                    "VLROUTER_* environment variables (nested with __, e.g. VLROUTER_SERVER__PORT), then these "
                    "flags. With no cloud URL (VLROUTER_CLOUD_BASE_URL), a local stand-in for the cloud tier "
                    "is started on another loopback port and labelled as such.")
    serve.add_argument("--config", type=Path, help="YAML settings file (default: configs/default.yaml)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8000)")
    serve.add_argument("--fd", type=int, metavar="N", help=FD_HELP)
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--workers", type=int, metavar="N",
                       help="gateway processes sharing the port (default from config: 1); /metrics aggregates "
                            "them (Prometheus multiprocess mode) and they share one decision log. Each loads "
                            "its own local backends and encoders: serve a local VLM with serve-model instead")
    serve.set_defaults(func=cmd_serve)

    sm = sub.add_parser(
        "serve-model", help="serve one local VLM over the OpenAI API (an edge box, or a cloud stand-in)",
        description="Serve one local transformers VLM (a folder with config.json, processor and weights) over "
                    "the same OpenAI-compatible API as the gateway.")
    sm.add_argument("--model", required=True, help="local model folder (never downloaded)")
    sm.add_argument("--name", help="model name clients use (default: the folder name)")
    sm.add_argument("--host", default="127.0.0.1")
    sm.add_argument("--port", type=int, default=8001)
    sm.add_argument("--fd", type=int, metavar="N", help=FD_HELP)
    sm.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sm.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    sm.add_argument("--api-key", default=os.environ.get("VLROUTER_SERVE_MODEL_API_KEY"),
                    help="require this bearer key (default: $VLROUTER_SERVE_MODEL_API_KEY, else none)")
    sm.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    sm.set_defaults(func=cmd_serve_model)
