"""The app factory. State (backends, router, metrics) is built in the lifespan; nothing at import."""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from vlrouter import __version__
from vlrouter.api.errors import install_error_handlers
from vlrouter.api.inputs import InputDecoder
from vlrouter.api.limits import RateLimiter, RateLimitMiddleware
from vlrouter.api.middleware import BodyLimitMiddleware, DecisionLogMiddleware, RequestIdMiddleware
from vlrouter.api.pipeline import Gateway
from vlrouter.api.routes import api, open_routes
from vlrouter.backends import build_backend
from vlrouter.backends.base import Backend
from vlrouter.backends.fallback import Admission, CircuitBreaker, Dispatcher
from vlrouter.config import LocalBackendConfig, Settings
from vlrouter.features import FeaturePipeline
from vlrouter.meters.energy import EnergyLedger, build_ledger
from vlrouter.router import Router, parse_scenario, router_from_settings
from vlrouter.router.planner import BackendRef, Planner
from vlrouter.telemetry.decision_log import DecisionLog, images_dir, log_location
from vlrouter.telemetry.metrics import Metrics
from vlrouter.telemetry.recorder import Recorder
from vlrouter.telemetry.tracing import Tracing, TracingMiddleware

log = logging.getLogger("vlrouter")


def build_energy(settings: Settings) -> EnergyLedger | None:
    """This process' energy meter for the in-process backends (remote ones report or are estimated)."""
    cfg = settings.energy
    if not cfg.enabled or not any(isinstance(b, LocalBackendConfig) for b in settings.backends.values()):
        return None
    ledger = build_ledger(prefer_gpu=cfg.prefer_gpu, powercap_root=cfg.powercap_root, i2c_root=cfg.i2c_root,
                          watts_per_core=cfg.watts_per_core, sample_interval_s=cfg.sample_interval_s)
    log.info("energy: local generations metered by %s", ledger.source)
    return ledger


def build_gateway(settings: Settings, backends: dict[str, Backend], router: Router, *, metrics: Metrics,
                  features: FeaturePipeline | None = None, decision_log: DecisionLog | None = None,
                  standins: frozenset[str] = frozenset(), energy: EnergyLedger | None = None,
                  tracing: Tracing | None = None) -> Gateway:
    """Wire the serving objects around started backends and a router."""
    routing = settings.routing
    planner = Planner([BackendRef(n, b.tier, b.model) for n, b in backends.items()], fallback=routing.fallback,
                      explore=routing.explore, rng=random.Random(routing.explore_seed))
    breakers = {name: CircuitBreaker(settings.backends[name].circuit) for name in backends}
    admissions = {name: Admission(settings.backends[name].admission, name) for name in backends}
    if decision_log is not None:
        decision_log.bind(metrics.registry)
    recorder = Recorder(metrics, decision_log, feature_spec_version=features.spec.version if features else None)
    http = httpx.AsyncClient()
    decoder = InputDecoder(settings, http, parse_scenario(routing.default_scenario))
    band = routing.cascade_band if routing.cascade_band is not None else router.cascade_band
    return Gateway(settings=settings, backends=backends, router=router, planner=planner,
                   dispatcher=Dispatcher(backends, breakers, admissions), recorder=recorder, decoder=decoder, http=http,
                   features=features, standins=standins, energy=energy, cascade_band=band, tracing=tracing)


def open_decision_log(settings: Settings) -> DecisionLog | None:
    """The configured decision log (SQLite file or PostgreSQL), or None when it is disabled."""
    cfg = settings.log
    if not cfg.enabled:
        return None
    return DecisionLog(log_location(cfg), log_content=cfg.log_content, max_pending=cfg.max_pending,
                       images=images_dir(cfg.path))


def trace_backends(tracing: Tracing, backends: dict[str, Backend], features: FeaturePipeline | None) -> None:
    """Spans per encoder, and ``traceparent`` on every request to an OpenAI-compatible backend."""
    if features is not None:
        features.tracing = tracing
    for backend in backends.values():
        if backend.kind == "openai":  # backends.openai_http.OpenAIBackend
            backend.trace_context = tracing.headers


def load_router(settings: Settings, features: FeaturePipeline | None) -> Router:
    """The configured policy, through the one router factory (a checkpoint is checked against the features)."""
    router = router_from_settings(settings.routing, None if features is None else features.spec)
    card = router.card()
    log.info("router: %s%s", router.describe(), f" from {card['checkpoint']}" if card.get("checkpoint") else "")
    return router


def _declare_chat_body(app: FastAPI) -> None:
    """Put ChatCompletionRequest (and its parts) in the OpenAPI components: the chat route parses its
    body itself (api.routes), so FastAPI would not list them."""
    from pydantic.json_schema import models_json_schema

    from vlrouter.protocol import ChatCompletionRequest

    base = app.openapi
    _, defs = models_json_schema([(ChatCompletionRequest, "validation")], ref_template="#/components/schemas/{model}")

    def openapi() -> dict:
        schema = base()  # cached by FastAPI after the first call
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        return schema

    app.openapi = openapi


def build_app(settings: Settings, *, standins: frozenset[str] = frozenset(), tracing: Tracing | None = None
              ) -> FastAPI:
    """The gateway app for ``settings``; ``standins`` names backends served by a local stand-in;
    ``tracing`` replaces the one ``telemetry.otlp_endpoint`` configures (tests pass an in-memory one)."""
    tracing = tracing or Tracing.from_settings(settings.telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        energy = build_energy(settings)
        backends = {name: build_backend(name, cfg, standin=name in standins, energy=energy)
                    for name, cfg in settings.backends.items()}
        features = None
        decision_log = open_decision_log(settings)
        try:
            # One after the other: first imports of transformers' lazy modules and open_clip's
            # registry are not safe to run concurrently from two threads.
            for backend in backends.values():
                await backend.start()
            metrics = Metrics()
            if settings.features.enabled:
                features = await asyncio.to_thread(FeaturePipeline, settings.features, metrics)
                log.info("features: %s", features.spec.describe())
            if tracing is not None:
                trace_backends(tracing, backends, features)
            app.state.gateway = build_gateway(settings, backends, load_router(settings, features), metrics=metrics,
                                              features=features, decision_log=decision_log, standins=standins,
                                              energy=energy, tracing=tracing)
            for name, b in backends.items():
                label = " (LOCAL STAND-IN for the cloud tier)" if name in standins else ""
                log.info("backend %s: tier=%s kind=%s model=%s%s", name, b.tier, b.kind, b.model, label)
            yield
        finally:
            await asyncio.gather(*(b.aclose() for b in backends.values()), return_exceptions=True)
            if features is not None:
                await features.aclose()
            if getattr(app.state, "gateway", None) is not None:
                await app.state.gateway.http.aclose()
            if decision_log is not None:  # in-flight requests are done: flush every pending row
                await asyncio.to_thread(decision_log.close)
                log.info("decision log: %d rows written to %s", decision_log.written, decision_log.store.describe())
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)

    app = FastAPI(title="vlrouter", version=__version__, lifespan=lifespan,
                  description="Edge-cloud routing gateway for vision-language models (OpenAI-compatible).")
    _declare_chat_body(app)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    limits = settings.server.rate_limits
    if limits.requests_per_minute or limits.tokens_per_minute:  # inside the log: a 429 is logged too
        app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(limits))
    app.add_middleware(DecisionLogMiddleware)
    if tracing is not None:  # outside the log: its span sees the final status and the closed record
        app.add_middleware(TracingMiddleware, tracing=tracing)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(open_routes)
    app.include_router(api)
    if settings.console.enabled:
        mount_console(app)
    return app


def mount_console(app: FastAPI) -> None:
    """The web console (``vlrouter.ui``): the page and its static files at /ui, its JSON at /ui/api."""
    from fastapi.staticfiles import StaticFiles

    from vlrouter.ui.routes import STATIC, console_api, console_page

    app.include_router(console_page)
    app.include_router(console_api)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")


def worker_app() -> FastAPI:
    """The app of one ``vlrouter serve --workers N`` worker (a uvicorn factory): the parent's settings,
    rebuilt from the same sources, with the parent's stand-in URLs."""
    import json
    import os

    from vlrouter.cli.supervise import WORKER_ENV, setup_logging
    from vlrouter.config import load_settings

    spec = json.loads(os.environ[WORKER_ENV])
    settings = load_settings(spec["config"], **spec["overrides"])
    setup_logging(settings.server.log_level)
    for name, url in spec["standins"].items():
        settings.backends[name].base_url = url
    return build_app(settings, standins=frozenset(spec["standins"]))
