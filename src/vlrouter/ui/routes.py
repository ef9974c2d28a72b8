"""The console's routes: ``/ui`` (the page and its static files, public) and ``/ui/api/*`` (JSON, keyed).

Every data endpoint takes the API's key (``require_key``): the page asks for one when the gateway
has keys and sends it as ``Authorization: Bearer``. Figures come from the decision log through
``LogSource`` (windowed, capped reads in a thread) and from this process' Prometheus registry (the
feature-cache hit rate); ``data`` computes them, in a thread too (tens of thousands of rows take a
few hundred milliseconds, which the event loop must not wait for). ``POST /ui/api/route`` runs the features and the
router on a chat request without generating or logging anything: the Try-it panel shows the
decision at once, then streams the real request from ``/v1/chat/completions``.
"""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from pathlib import Path

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from vlrouter.api.inputs import validated_json
from vlrouter.api.pipeline import Pipeline
from vlrouter.api.routes import ERRORS, gateway, require_key
from vlrouter.errors import RequestError
from vlrouter.protocol import ChatCompletionRequest
from vlrouter.router.planner import AUTO_MODEL
from vlrouter.ui import data
from vlrouter.ui.router_view import checkpoint_meta, router_record
from vlrouter.ui.source import MAX_WINDOW_S, LogSource

STATIC = Path(str(resources.files("vlrouter.ui") / "static"))
console_page = APIRouter(include_in_schema=False)
# the page's own API, not the gateway's: left out of /openapi.json (which clients and the fuzz tests read)
console_api = APIRouter(prefix="/ui/api", dependencies=[Depends(require_key)], responses=ERRORS,
                        include_in_schema=False)
WindowS = Query(3600.0, ge=60, le=MAX_WINDOW_S, description="seconds back from now")


def _json(body) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def log_source(request: Request) -> LogSource:
    """The gateway's console reader (made on first use); 409 while the decision log is disabled."""
    gw = gateway(request)
    if gw.recorder.log is None:
        raise RequestError(409, "the decision log is disabled (log.enabled: false): the console has no figures",
                           code="log_disabled")
    state = request.app.state
    if getattr(state, "console_source", None) is None:
        # the location as configured: read_rows decides what it names (a file today)
        state.console_source = LogSource(gw.settings.log.path, gw.settings.console.max_rows)
    return state.console_source


@console_page.get("/ui")
@console_page.get("/ui/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


@console_api.get("/live")
async def live(request: Request, window: float = Query(900.0, ge=60, le=MAX_WINDOW_S)) -> Response:
    """Rate, edge share per scenario over time, latency and energy per tier, errors, cache hit rate."""
    win = await log_source(request).window(window)
    body = await asyncio.to_thread(data.live, win.rows, now=win.until, window_s=window)  # 50k rows: ~0.3 s
    samples = [(s.labels, s.value) for metric in gateway(request).recorder.metrics.feature_cache.collect()
               for s in metric.samples if s.name.endswith("_total")]
    body.update(cache=data.cache_hit_rate(samples), read=win.meta(),
                refresh_s=gateway(request).settings.console.refresh_s)
    return _json(body)


@console_api.get("/savings")
async def savings(request: Request, window: float = WindowS) -> Response:
    """Energy, latency and cost saved against "everything to the cloud", with the method in words."""
    gw = gateway(request)
    cfg, energy = gw.settings.console, gw.settings.energy
    prices = data.CloudPrices(energy.cloud_j_per_input_token, energy.cloud_j_per_output_token,
                              cfg.cloud_usd_per_mtok_input, cfg.cloud_usd_per_mtok_output, cfg.usd_per_kwh)
    win = await log_source(request).window(window)
    figures = await asyncio.to_thread(data.savings, win.rows, prices)
    return _json({**figures, "window_s": window, "read": win.meta()})


@console_api.get("/decisions")
async def decisions(request: Request, window: float = WindowS, limit: int = Query(50, ge=1, le=500)) -> Response:
    """The latest logged requests, newest first."""
    win = await log_source(request).window(window, max_rows=limit)
    latest = [data.decision_summary(r) for r in reversed(win.rows)]
    return _json({"object": "list", "data": latest, "read": win.meta()})


@console_api.get("/decisions/{request_id}")
async def decision(request: Request, request_id: str,
                   ts: float | None = Query(None, description="the row's time, to narrow the look-up")) -> Response:
    """One logged request in full, with why the router chose its tier."""
    source = log_source(request)
    now = time.time()
    win = await (source.around(ts - 5, ts + 5) if ts is not None else source.around(now - 3600, now + 60))
    row = next((r for r in reversed(win.rows) if r.get("request_id") == request_id), None)
    if row is None:
        raise RequestError(404, f"no logged request with id {request_id!r} in the window", code="request_not_found",
                           param="request_id")
    return _json({"record": row, "why": data.why(row)})


@console_api.get("/router")
async def router(request: Request) -> Response:
    """The loaded policy: checkpoint, FeatureSpec, training data, floors, thresholds, eval curve."""
    gw, state = gateway(request), request.app.state
    if getattr(state, "console_checkpoint", None) is None:
        state.console_checkpoint = checkpoint_meta(gw.settings.routing.checkpoint)
    return _json({**router_record(gw, state.console_checkpoint), "refresh_s": gw.settings.console.refresh_s})


@console_api.post("/route")
async def route_preview(request: Request) -> Response:
    """The router's decision and scores for a chat request body, without generating or logging."""
    gw = gateway(request)
    query = await gw.decoder.chat(validated_json(ChatCompletionRequest, await request.body()), request)
    if query.model != AUTO_MODEL:
        decision, forced = gw.planner.forced(query.model).decision, True
    else:
        decision, forced = await Pipeline(gw, None).decide(query), False
    return _json({"tier": decision.tier, "model": decision.model, "policy": decision.policy, "forced": forced,
                  "threshold": decision.threshold, "scores": decision.scores, "reason": decision.reason,
                  "explanation": getattr(decision, "explanation", None), "floor": getattr(decision, "floor", None),
                  "scenario": query.scenario.as_dict()})
