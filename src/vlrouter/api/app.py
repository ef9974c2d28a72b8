"""The app factory. State (backends, router, metrics) is built in the lifespan; nothing at import."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vlrouter import __version__
from vlrouter.api.errors import install_error_handlers
from vlrouter.api.middleware import BodyLimitMiddleware, DecisionLogMiddleware, RequestIdMiddleware
from vlrouter.api.routes import api, open_routes
from vlrouter.api.serving import Gateway
from vlrouter.backends import build_backend
from vlrouter.config import Settings
from vlrouter.features import FeaturePipeline
from vlrouter.meters.energy import EnergyLedger, build_ledger
from vlrouter.router import router_from_settings
from vlrouter.telemetry.decision_log import DecisionLog
from vlrouter.telemetry.metrics import Metrics

log = logging.getLogger("vlrouter")


def load_router(settings: Settings, features: FeaturePipeline | None):
    """The configured policy, through the one router factory (a checkpoint is checked against the features)."""
    router = router_from_settings(settings.routing, None if features is None else features.spec)
    thresholds = getattr(router, "thresholds", None)
    if thresholds:
        log.info("router: %s from %s (tau fast/quality/energy = %s)", router.name, settings.routing.checkpoint,
                 "/".join(f"{thresholds[k]:.2f}" for k in ("fast", "quality", "energy")))
    return router


def build_energy(settings: Settings, backends: dict) -> EnergyLedger | None:
    """This process' energy meter, handed to the in-process backends (remote ones report or are estimated)."""
    local = [b for b in backends.values() if getattr(b, "kind", "") == "local"]
    if not settings.energy.enabled or not local:
        return None
    cfg = settings.energy
    ledger = build_ledger(prefer_gpu=cfg.prefer_gpu, powercap_root=cfg.powercap_root, i2c_root=cfg.i2c_root,
                          watts_per_core=cfg.watts_per_core, sample_interval_s=cfg.sample_interval_s)
    log.info("energy: local generations metered by %s", ledger.source)
    for backend in local:
        backend.energy = ledger
    return ledger


def build_app(settings: Settings, *, standins: frozenset[str] = frozenset()) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        backends = {name: build_backend(name, cfg, standin=name in standins)
                    for name, cfg in settings.backends.items()}
        features = None
        decision_log = DecisionLog(settings.log.path, log_content=settings.log.log_content) \
            if settings.log.enabled else None
        try:
            metrics = Metrics()
            # One after the other: first imports of transformers' lazy modules and open_clip's
            # registry are not safe to run concurrently from two threads.
            for backend in backends.values():
                await backend.start()
            if settings.features.enabled:
                features = await asyncio.to_thread(FeaturePipeline, settings.features, metrics)
                log.info("features: %s", features.spec.describe())
            gateway = Gateway.create(settings, backends, load_router(settings, features),
                                     metrics=metrics, features=features, standins=standins)
            gateway.decision_log = decision_log
            gateway.energy = build_energy(settings, backends)
            app.state.gateway = gateway
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
                log.info("decision log: %d rows written to %s", decision_log.written, settings.log.path)

    app = FastAPI(title="vlrouter", version=__version__, lifespan=lifespan,
                  description="Edge-cloud routing gateway for vision-language models (OpenAI-compatible).")
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    app.add_middleware(DecisionLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(open_routes)
    app.include_router(api)
    return app
