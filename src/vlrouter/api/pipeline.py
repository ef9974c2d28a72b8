"""The one serving pipeline behind both endpoints: features -> plan -> dispatch -> record.

``Gateway`` holds what the app's lifespan built. ``Pipeline.answer`` serves a decoded ``Query`` in
one piece and ``Pipeline.open_stream`` returns a committed ``Relay`` whose text the SSE layer frames;
either way the ``Recorder`` accounts for the request once. The endpoints (``api.routes``) only
decode their wire format (``api.inputs``) and shape the answer (``api.responses``, ``api.sse``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import httpx

from vlrouter.api.errors import as_error
from vlrouter.api.inputs import InputDecoder, Query
from vlrouter.backends.base import Backend, Generation, StreamDelta
from vlrouter.backends.fallback import AllBackendsFailed, Attempts, Dispatcher
from vlrouter.config import Settings
from vlrouter.errors import VLRouterError
from vlrouter.features import FeaturePipeline
from vlrouter.meters.energy import EnergyLedger, EnergyReading, token_estimate
from vlrouter.meters.latency import RequestLatency, measure
from vlrouter.router import Decision, Router, RoutingInput
from vlrouter.router.cascade import settled
from vlrouter.router.planner import AUTO_MODEL, Plan, Planner
from vlrouter.telemetry.record import DecisionRecord
from vlrouter.telemetry.recorder import Recorder
from vlrouter.telemetry.tracing import NULL_SPAN, Tracing

log = logging.getLogger("vlrouter.gateway")


@dataclass
class Gateway:
    """What the lifespan built: backends, router and planner, dispatcher, recorder, decoder."""

    settings: Settings
    backends: dict[str, Backend]
    router: Router
    planner: Planner
    dispatcher: Dispatcher
    recorder: Recorder
    decoder: InputDecoder
    http: httpx.AsyncClient  # for allow-listed remote image URLs
    features: FeaturePipeline | None = None
    standins: frozenset[str] = frozenset()
    energy: EnergyLedger | None = None  # this process' meter (the local backends measure with it)
    cascade_band: float = 0.0  # routing.cascade_band, or the checkpoint's (router.cascade); 0: off
    tracing: Tracing | None = None  # telemetry.otlp_endpoint set: spans per request (telemetry.tracing)

    def energy_of(self, backend: Backend, result: Generation) -> EnergyReading | None:
        """What the backend measured (or a remote vlrouter reported), else a per-token estimate for
        remote backends; None for a local backend that is not metered."""
        if result.energy is not None:
            return result.energy
        if backend.kind == "local":
            return None
        cfg = self.settings.energy
        cloud = backend.tier == "cloud"
        return token_estimate(
            result.prompt_tokens, result.completion_tokens,
            j_per_input_token=cfg.cloud_j_per_input_token if cloud else cfg.edge_j_per_input_token,
            j_per_output_token=cfg.cloud_j_per_output_token if cloud else cfg.edge_j_per_output_token)


@dataclass
class Routed:
    """A query with its plan and the time it took to make it."""

    query: Query
    plan: Plan
    route_s: float


@dataclass
class Answer:
    """A served non-streamed request: who answered, what, and its measured cost."""

    routed: Routed
    backend: Backend
    attempts: Attempts
    result: Generation
    latency: RequestLatency
    energy: EnergyReading | None


class Pipeline:
    """Serves decoded queries for one request; ``rec`` is its decision record (None: log disabled) and
    ``state`` the request's ASGI state (the rate limiter reads ``usage_tokens`` from it)."""

    def __init__(self, gateway: Gateway, rec: DecisionRecord | None, state=None):
        self.gw = gateway
        self.rec = rec
        self.state = state

    async def route(self, query: Query) -> Routed:
        """Features and router for ``vlrouter-auto``, else the forced backend; recorded as planned."""
        started = time.perf_counter()
        gw = self.gw
        with NULL_SPAN if gw.tracing is None else gw.tracing.span("route", **{"vlrouter.model": query.model}):
            if query.model == AUTO_MODEL:
                plan = gw.planner.routed(await self.decide(query))
            else:
                plan = gw.planner.forced(query.model)
        routed = Routed(query, plan, time.perf_counter() - started)
        gw.recorder.planned(self.rec, model=query.model, scenario=query.scenario, plan=plan,
                            route_s=routed.route_s, stream=query.stream, messages=query.messages)
        return routed

    async def decide(self, query: Query) -> Decision:
        """The router's decision; with images and a cascade band, first without the image encoder."""
        gw = self.gw
        images, text = query.generation.images, query.generation.text

        def routing_input(vector, unknown=frozenset()) -> RoutingInput:
            return RoutingInput(text=text, n_images=len(images), image_pixels=sum(i.pixels for i in images),
                                scenario=query.scenario, features=vector, unknown=unknown)

        if gw.features is None:
            return gw.router.route(routing_input(None))
        band = gw.cascade_band
        if band > 0 and images and gw.features.image is not None:
            cheap = await gw.features.extract(text, images, image=False)
            decision = gw.router.route(routing_input(cheap.vector, frozenset({"image"})))
            if settled(decision, band):
                gw.recorder.cascade("text")
                return replace(decision, scores={**decision.scores, "image_encoder": 0.0})
            gw.recorder.cascade("image")
            features = await gw.features.add_images(cheap, images)
            decision = gw.router.route(routing_input(features.vector))
            return replace(decision, scores={**decision.scores, "image_encoder": 1.0})
        return gw.router.route(routing_input((await gw.features.extract(text, images)).vector))

    async def answer(self, query: Query) -> Answer:
        """Route, generate (with fallback down the chain) and record one non-streamed request."""
        try:
            routed = await self.route(query)
            gw = self.gw
            if gw.tracing is None or not routed.plan.chain:
                result, backend, attempts = await gw.dispatcher.generate(list(routed.plan.chain), query.generation)
            else:
                (result, backend, attempts), span = await self._traced(routed, gw.dispatcher.generate)
                gw.tracing.end_backend(span, backend, result, _since(query, result.first_token_at))
        except Exception as exc:
            raise self.failed(exc, query) from exc
        latency, energy = self.account(routed, backend, 200, result, attempts)
        return Answer(routed, backend, attempts, result, latency, energy)

    async def open_stream(self, query: Query) -> Relay:
        """Route and open a stream that has produced its first delta (fallback happens before it)."""
        span = None
        try:
            routed = await self.route(query)
            gw = self.gw
            if gw.tracing is None or not routed.plan.chain:
                backend, stream, attempts = await gw.dispatcher.open_stream(list(routed.plan.chain),
                                                                            query.generation)
            else:  # the span stays open until the stream is closed (Relay.close)
                (backend, stream, attempts), span = await self._traced(routed, gw.dispatcher.open_stream)
        except Exception as exc:
            raise self.failed(exc, query) from exc
        return Relay(self, routed, backend, stream, attempts, span=span)

    async def _traced(self, routed: Routed, call) -> tuple[tuple, object]:
        """``call(chain, request)`` (the dispatcher's generate or open_stream) inside the backend span,
        which is current meanwhile, so OpenAI-compatible backends receive its ``traceparent``."""
        tracing, query = self.gw.tracing, routed.query
        span, token = tracing.start_backend(self.gw.backends[routed.plan.chain[0]], query.generation.max_tokens)
        try:
            return await call(list(routed.plan.chain), query.generation), span
        except Exception as exc:
            tracing.end_backend(span, None, None, None, exc)
            raise
        finally:
            tracing.detach(token)

    def failed(self, exc: BaseException, query: Query | None) -> VLRouterError:
        """Account for a request that ends in an error before any backend answered."""
        err = as_error(exc)
        self.gw.recorder.failed(err.status, exc.attempts if isinstance(exc, AllBackendsFailed) else None)
        log.warning("request %s failed: %s %s", query.request_id if query else "-", err.status, err.message)
        return err

    def account(self, routed: Routed, backend: Backend, status: int, result: Generation,
                 attempts: Attempts) -> tuple[RequestLatency, EnergyReading | None]:
        latency = measure(started=routed.query.started, route_s=routed.route_s, ended=time.perf_counter(),
                          first_token_at=result.first_token_at, queue_s=result.queue_s,
                          prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
        energy = self.gw.energy_of(backend, result)
        self.gw.recorder.answered(self.rec, backend=backend, status=status, result=result, latency=latency,
                                  energy=energy, attempts=attempts)
        if self.state is not None and hasattr(self.state, "usage_tokens"):
            self.state.usage_tokens += result.prompt_tokens + result.completion_tokens
        if log.isEnabledFor(logging.DEBUG):  # the decision log and /metrics hold this; no line per request
            q, d = routed.query, routed.plan.decision
            log.debug("%s model=%s scenario=%s decision=%s(%s) answered_by=%s/%s fallback=%s route_ms=%.2f",
                      q.request_id, q.model, q.scenario, d.tier, d.reason, backend.tier, backend.name,
                      attempts.failed or "-", routed.route_s * 1000)
        return latency, energy


def _since(query: Query, at: float | None) -> float | None:
    """Seconds from the request's arrival to ``at`` (a perf_counter time), e.g. the time to first token."""
    return None if at is None else at - query.started


@dataclass
class Relay:
    """A stream committed to one backend: iterate for text, then ``close`` once to record it."""

    pipeline: Pipeline
    routed: Routed
    backend: Backend
    stream: AsyncIterator[StreamDelta]
    attempts: Attempts
    final: StreamDelta = field(default_factory=StreamDelta)
    first_token_at: float | None = None
    closed: bool = False
    span: object | None = None  # the backend call's trace span, ended by close()

    async def texts(self) -> AsyncIterator[str]:
        """The streamed text pieces; the last delta (finish reason, tokens, energy) lands in ``final``."""
        async for delta in self.stream:
            if delta.text:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                yield delta.text
            if delta.finish_reason:
                self.final = delta

    def outcome(self) -> tuple[Generation, EnergyReading | None]:
        result = Generation.from_final(self.final, first_token_at=self.first_token_at)
        return result, self.pipeline.gw.energy_of(self.backend, result)

    async def close(self, error: VLRouterError | None) -> None:
        """Stop the backend stream and record how it ended (an error, the client leaving, or done)."""
        if self.closed:
            return
        self.closed = True
        await self.stream.aclose()  # type: ignore[attr-defined]
        result = Generation.from_final(self.final, first_token_at=self.first_token_at)
        status = 200 if error is None else error.status
        if self.span is not None:
            self.pipeline.gw.tracing.end_backend(self.span, self.backend, result,
                                                 _since(self.routed.query, self.first_token_at), error)
        self.pipeline.account(self.routed, self.backend, status, result, self.attempts)
        rec = self.pipeline.rec
        if rec is not None and error is not None:
            rec.error_code = "stream_error"
        elif rec is not None and self.final.finish_reason is None:  # closed before the end: the client left
            rec.error_code = "client_disconnected"
