"""The work behind the routes: resolve input, route, dispatch (with fallback), shape the answer.

``Gateway`` holds what the lifespan built (backends, router, dispatcher, metrics); ``ChatServing``
turns an OpenAI chat request or an /infer request into one ``Query``, runs it and returns a response,
a stream or raises an error the handlers shape.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from vlrouter.api.errors import APIError, to_api_error
from vlrouter.backends.base import Backend, Generation, GenerationRequest, Message, StreamDelta
from vlrouter.backends.fallback import AllBackendsFailed, Attempts, CircuitBreaker, Dispatcher
from vlrouter.config import TIERS, Settings
from vlrouter.features import FeaturePipeline
from vlrouter.media import DecodedImage, MediaError, decode_base64_image, decode_image_bytes, fetch_remote_image
from vlrouter.meters.energy import EnergyLedger, EnergyReading, token_estimate
from vlrouter.meters.latency import RequestLatency, measure
from vlrouter.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    FallbackInfo,
    InferJSONRequest,
    InferResponse,
    TokenCounts,
    Usage,
)
from vlrouter.router import Decision, Router, RoutingInput, Scenario, parse_scenario
from vlrouter.telemetry.decision_log import image_name
from vlrouter.telemetry.metrics import Metrics

log = logging.getLogger("vlrouter.gateway")
AUTO_MODEL = "vlrouter-auto"


@dataclass
class Gateway:
    settings: Settings
    backends: dict[str, Backend]
    router: Router
    dispatcher: Dispatcher
    metrics: Metrics
    http: httpx.AsyncClient  # for allow-listed remote image URLs
    default_scenario: Scenario
    features: FeaturePipeline | None = None
    standins: frozenset[str] = frozenset()
    decision_log: Any = None  # telemetry.decision_log.DecisionLog, set by the app's lifespan
    energy: EnergyLedger | None = None  # this process' meter (local backends measure with it)
    rng: random.Random = field(default_factory=random.Random)  # exploration draws

    @classmethod
    def create(cls, settings: Settings, backends: dict[str, Backend], router: Router, *, metrics: Metrics,
               features: FeaturePipeline | None = None, standins: frozenset[str] = frozenset()) -> Gateway:
        breakers = {name: CircuitBreaker(settings.backends[name].circuit) for name in backends}
        return cls(settings=settings, backends=backends, router=router,
                   dispatcher=Dispatcher(backends, breakers), metrics=metrics,
                   http=httpx.AsyncClient(), default_scenario=parse_scenario(settings.routing.default_scenario),
                   features=features, standins=standins, rng=random.Random(settings.routing.explore_seed))

    def energy_of(self, backend: Backend, result: Generation) -> EnergyReading | None:
        """What the backend measured (or a remote vlrouter reported), else a per-token estimate for
        remote backends; None for a local backend that is not metered."""
        if result.energy is not None:
            return result.energy
        if getattr(backend, "kind", "") == "local":
            return None
        cfg = self.settings.energy
        if backend.tier == "cloud":
            return token_estimate(result.prompt_tokens, result.completion_tokens,
                                  j_per_input_token=cfg.cloud_j_per_input_token,
                                  j_per_output_token=cfg.cloud_j_per_output_token)
        return token_estimate(result.prompt_tokens, result.completion_tokens,
                              j_per_input_token=cfg.edge_j_per_input_token,
                              j_per_output_token=cfg.edge_j_per_output_token)

    def by_model_name(self, model: str) -> str | None:
        if model in self.backends:
            return model
        return next((name for name, b in self.backends.items() if b.model == model), None)

    def first_of_tier(self, tier: str) -> str | None:
        return next((name for name, b in self.backends.items() if b.tier == tier), None)


@dataclass
class Query:
    request_id: str
    messages: list[Message]
    scenario: Scenario
    generation: GenerationRequest
    model: str
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Plan:
    chain: list[str]
    decision: Decision
    route_s: float
    explore: bool = False  # the tier was drawn at random (routing.explore), not chosen by the router
    propensity: float = 1.0  # probability that this tier was the one served, given the router's choice


@dataclass
class Measured:
    latency: RequestLatency
    energy: EnergyReading | None


class ChatServing:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    # ------------------------------------------------------------------ input
    async def _image(self, url: str, param: str) -> DecodedImage:
        limits = self.gw.settings.images
        if url.startswith("data:"):
            return decode_base64_image(url, limits, param)
        if url.startswith(("http://", "https://")):
            return await fetch_remote_image(url, limits, self.gw.http, param)
        raise MediaError("image_url must be a data URL or an http(s) URL", code="invalid_image_url", param=param)

    async def _messages(self, messages: list[ChatMessage]) -> list[Message]:
        out, n_images = [], 0
        for i, m in enumerate(messages):
            role = "system" if m.role == "developer" else m.role
            if m.content is None or m.content == "" or m.content == []:
                raise APIError(400, f"messages[{i}].content must not be empty", code="invalid_value",
                               param=f"messages.{i}.content")
            if isinstance(m.content, str):
                out.append(Message(role, [m.content]))
                continue
            parts: list[str | DecodedImage] = []
            for j, part in enumerate(m.content):
                if part.type == "text":
                    parts.append(part.text)
                    continue
                n_images += 1
                if n_images > self.gw.settings.images.max_images:
                    raise APIError(400, f"at most {self.gw.settings.images.max_images} images per request",
                                   code="too_many_images", param=f"messages.{i}.content.{j}")
                if role != "user":
                    raise APIError(400, "images are accepted in user messages only", code="invalid_value",
                                   param=f"messages.{i}.content.{j}")
                parts.append(await self._image(part.image_url.url, f"messages.{i}.content.{j}.image_url"))
            out.append(Message(role, parts))
        if not any(m.role == "user" for m in out):
            raise APIError(400, "messages must contain at least one user message", code="invalid_value",
                           param="messages")
        return out

    def _scenario(self, body_value: Any, request: Request) -> Scenario:
        if body_value is not None:
            return parse_scenario(body_value)
        header = request.headers.get("x-vlrouter-scenario")
        return parse_scenario(header) if header else self.gw.default_scenario

    def _max_tokens(self, value: int | None) -> int:
        gen = self.gw.settings.generation
        if value is None:
            return gen.default_max_tokens
        if value > gen.max_tokens_limit:
            raise APIError(400, f"max_tokens must be <= {gen.max_tokens_limit}", code="invalid_value",
                           param="max_tokens")
        return value

    # ------------------------------------------------------------------ routing
    async def _plan(self, query: Query) -> Plan:
        started = time.perf_counter()
        gw = self.gw
        explore, propensity = False, 1.0
        if query.model == AUTO_MODEL:
            images = query.generation.images
            text = query.generation.text
            features = await gw.features.extract(text, images) if gw.features is not None else None
            decision = gw.router.route(RoutingInput(
                text=text, n_images=len(images), image_pixels=sum(img.pixels for img in images),
                scenario=query.scenario, features=None if features is None else features.vector))
            tier, explore, propensity = self._explore(decision.tier)
            primary = gw.first_of_tier(tier)
            other = next((t for t in TIERS if t != tier), "cloud")
            if primary is None:  # e.g. an edge-only deployment
                primary = gw.first_of_tier(other)
                decision.scores["tier_unavailable"] = 1.0
            chain = [primary]
            secondary = gw.first_of_tier(other)
            if gw.settings.routing.fallback and secondary and secondary != primary:
                chain.append(secondary)
        elif (name := gw.by_model_name(query.model)) is not None:  # an exact backend/model name wins
            decision = Decision(tier=gw.backends[name].tier, policy="forced", threshold=math.nan,
                                reason=f"model={query.model}")
            chain = [name]
        elif query.model in TIERS:
            name = gw.first_of_tier(query.model)
            if name is None:
                raise APIError(404, f"no backend serves tier {query.model!r}", code="model_not_found", param="model")
            decision = Decision(tier=query.model, policy="forced", threshold=math.nan,
                                reason=f"model={query.model}")
            chain = [name]
        else:
            known = [AUTO_MODEL, *TIERS, *gw.backends, *{b.model for b in gw.backends.values()}]
            raise APIError(404, f"model {query.model!r} not found; available: {sorted(set(known))}",
                           code="model_not_found", param="model")
        route_s = time.perf_counter() - started
        gw.metrics.route_seconds.observe(route_s)
        return Plan(chain=[c for c in chain if c], decision=decision, route_s=route_s,
                    explore=explore, propensity=propensity)

    def _explore(self, tier: str) -> tuple[str, bool, float]:
        """With probability ``routing.explore`` serve a uniformly random tier (of those with a backend)."""
        eps = self.gw.settings.routing.explore
        tiers = [t for t in TIERS if self.gw.first_of_tier(t) is not None]
        if eps <= 0 or len(tiers) < 2 or tier not in tiers:
            return tier, False, 1.0
        explored = self.gw.rng.random() < eps
        served = self.gw.rng.choice(tiers) if explored else tier
        propensity = (1 - eps) * (served == tier) + eps / len(tiers)
        return served, explored, propensity

    def _note_plan(self, request: Request, query: Query, plan: Plan, stream: bool) -> None:
        """Fill the decision-log row that DecisionLogMiddleware writes when the response ends."""
        row = getattr(request.state, "log_row", None)
        if row is None:
            return
        d = plan.decision
        row.update(model_requested=query.model, scenario_name=query.scenario.name, w_speed=query.scenario.speed,
                   w_quality=query.scenario.quality, w_energy=query.scenario.energy, policy=d.policy,
                   decided_tier=d.tier, decided_model=d.model, scores=d.scores,
                   threshold=None if math.isnan(d.threshold) else d.threshold,
                   route_ms=round(plan.route_s * 1000, 3), stream=int(stream), explore=int(plan.explore),
                   propensity=round(plan.propensity, 6),
                   feature_spec_version=self.gw.features.spec.version if self.gw.features else None)
        if self.gw.settings.log.log_content:
            images = {image_name(i.sha256, i.mime): i.data for m in query.messages for i in m.images}
            row["content"] = {"messages": [{"role": m.role, "text": m.text,
                                            "images": [image_name(i.sha256, i.mime) for i in m.images]}
                                           for m in query.messages]}
            row["_images"] = images

    def _headers(self, query: Query, plan: Plan, backend: Backend, attempts: Attempts) -> dict[str, str]:
        headers = {
            "x-vlrouter-tier": backend.tier,
            "x-vlrouter-backend": backend.name,
            "x-vlrouter-route-ms": f"{plan.route_s * 1000:.3f}",
            "x-vlrouter-policy": plan.decision.policy,
            "x-vlrouter-threshold": "" if math.isnan(plan.decision.threshold) else f"{plan.decision.threshold:.4f}",
            "x-vlrouter-scenario": str(query.scenario),
        }
        if attempts.fell_back:
            headers["x-vlrouter-fallback-from"] = ",".join(name for name, _ in attempts.failed)
        return headers

    def _record(self, request: Request, backend: Backend, status: int, query: Query, plan: Plan,
                attempts: Attempts | None, result: Generation) -> Measured:
        """Latency and energy of one answered request: into metrics and its decision-log row."""
        latency = measure(started=query.started, route_s=plan.route_s, ended=time.perf_counter(),
                          first_token_at=result.first_token_at, queue_s=result.queue_s,
                          prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
        energy = self.gw.energy_of(backend, result)
        row = getattr(request.state, "log_row", None)
        if row is not None:
            timings = latency.as_ms()
            timings.pop("e2e_ms")  # the middleware stamps e2e when the last byte has been sent
            row.update(tier=backend.tier, backend=backend.name,
                       fallback_from=",".join(n for n, _ in attempts.failed) if attempts and attempts.failed
                       else None,
                       prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, **timings)
            if energy is not None:
                row.update(energy_j=round(energy.joules, 6), energy_source=energy.source,
                           energy_attribution=energy.attribution)
        m = self.gw.metrics
        tier = backend.tier
        m.requests.labels(tier=tier, backend=backend.name, status=str(status)).inc()
        m.e2e_seconds.labels(tier=tier).observe(latency.e2e_s)
        if latency.ttft_s is not None:
            m.ttft_seconds.labels(tier=tier).observe(latency.ttft_s)
        if latency.tpot_s is not None:
            m.tpot_seconds.labels(tier=tier).observe(latency.tpot_s)
        m.tokens.labels(tier=tier, direction="input").inc(result.prompt_tokens)
        m.tokens.labels(tier=tier, direction="output").inc(result.completion_tokens)
        if energy is not None:
            m.energy_joules.labels(tier=tier, source=energy.source).inc(energy.joules)
        if attempts and attempts.fell_back:
            m.fallbacks.labels(from_backend=attempts.failed[0][0], to_backend=backend.name).inc()
        return Measured(latency, energy)

    def _fail(self, exc: Exception, query: Query | None) -> APIError:
        err = to_api_error(exc)
        if isinstance(exc, AllBackendsFailed):
            err = APIError(503, str(exc), code="backend_unavailable")
        self.gw.metrics.requests.labels(tier="none", backend="none", status=str(err.status)).inc()
        log.warning("request %s failed: %s %s", query.request_id if query else "-", err.status, err.message)
        return err

    # ------------------------------------------------------------------ endpoints
    async def chat(self, body: ChatCompletionRequest, request: Request):
        query = None
        try:
            query = Query(
                request_id=request.state.request_id,
                messages=await self._messages(body.messages),
                scenario=self._scenario(body.scenario, request),
                model=body.model,
                generation=GenerationRequest(
                    messages=[], max_tokens=self._max_tokens(body.max_completion_tokens or body.max_tokens),
                    temperature=body.temperature if body.temperature is not None else 0.0,
                    top_p=body.top_p if body.top_p is not None else 1.0,
                    stop=body.stop or [], seed=body.seed, request_id=request.state.request_id),
            )
            query.generation.messages = query.messages
            plan = await self._plan(query)
            self._note_plan(request, query, plan, body.stream)
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                return await self._stream_chat(query, plan, include_usage, request)
            result, backend, attempts = await self.gw.dispatcher.generate(plan.chain, query.generation)
        except Exception as exc:
            raise self._fail(exc, query) from exc
        measured = self._record(request, backend, 200, query, plan, attempts, result)
        self._log(query, plan, backend, attempts)
        completion = ChatCompletion(
            id=f"chatcmpl-{query.request_id}", model=backend.model,
            choices=[Choice(message=AssistantMessage(content=result.text),
                            finish_reason=_finish(result.finish_reason))],
            usage=_usage(result.prompt_tokens, result.completion_tokens, measured.energy),
        )
        return JSONResponse(completion.model_dump(exclude_none=True),
                            headers=self._headers(query, plan, backend, attempts))

    async def _stream_chat(self, query: Query, plan: Plan, include_usage: bool, request: Request) -> StreamingResponse:
        backend, stream, attempts = await self.gw.dispatcher.open_stream(plan.chain, query.generation)
        chunk_id = f"chatcmpl-{query.request_id}"

        def sse(chunk: ChatCompletionChunk) -> str:
            return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

        async def events() -> AsyncIterator[str]:
            first, final, status = None, StreamDelta(), 200
            try:
                yield sse(ChatCompletionChunk(id=chunk_id, model=backend.model,
                                              choices=[ChunkChoice(delta=Delta(role="assistant", content=""))]))
                async for delta in stream:
                    if delta.text:
                        if first is None:
                            first = time.perf_counter()
                        yield sse(ChatCompletionChunk(id=chunk_id, model=backend.model,
                                                      choices=[ChunkChoice(delta=Delta(content=delta.text))]))
                    if delta.finish_reason:
                        final = delta
                reason = _finish(final.finish_reason)
                yield sse(ChatCompletionChunk(id=chunk_id, model=backend.model,
                                              choices=[ChunkChoice(delta=Delta(), finish_reason=reason)]))
                if include_usage:
                    p, c = final.prompt_tokens or 0, final.completion_tokens or 0
                    energy = self.gw.energy_of(backend, Generation.from_final(final, first_token_at=first))
                    yield sse(ChatCompletionChunk(id=chunk_id, model=backend.model, choices=[],
                                                  usage=_usage(p, c, energy)))
                yield "data: [DONE]\n\n"
            except Exception as exc:  # after the headers: report in-band, as OpenAI does
                err = to_api_error(exc)
                status = err.status
                error = {"message": err.message, "type": "server_error", "code": err.code}
                yield f"data: {json.dumps({'error': error})}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
                self._record(request, backend, status, query, plan, attempts,
                             Generation.from_final(final, first_token_at=first))
                row = getattr(request.state, "log_row", None)
                if row is not None and status != 200:
                    row["error_code"] = "stream_error"
                elif row is not None and final.finish_reason is None:  # closed before the end: the client left
                    row["error_code"] = "client_disconnected"
                self._log(query, plan, backend, attempts)

        headers = self._headers(query, plan, backend, attempts)
        headers["cache-control"] = "no-cache"
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def infer(self, request: Request) -> JSONResponse:
        query = None
        try:
            body, images = await self._infer_input(request)
            messages = [Message("user", [*images, body.text])]
            query = Query(
                request_id=request.state.request_id, messages=messages,
                scenario=self._scenario(body.scenario, request), model=body.model,
                generation=GenerationRequest(
                    messages=messages, max_tokens=self._max_tokens(body.max_tokens),
                    temperature=body.temperature or 0.0, request_id=request.state.request_id),
            )
            plan = await self._plan(query)
            self._note_plan(request, query, plan, False)
            result, backend, attempts = await self.gw.dispatcher.generate(plan.chain, query.generation)
        except Exception as exc:
            raise self._fail(exc, query) from exc
        measured = self._record(request, backend, 200, query, plan, attempts, result)
        self._log(query, plan, backend, attempts)
        lat, energy = measured.latency, measured.energy
        fallback = None
        if attempts.fell_back:
            fallback = FallbackInfo(from_backend=attempts.failed[0][0], error=attempts.failed[0][1])
        answer = InferResponse(
            answer=result.text, tier=backend.tier, backend=backend.name, model=backend.model,
            scenario=query.scenario.as_dict(), policy=plan.decision.policy, scores=plan.decision.scores,
            threshold=plan.decision.threshold, explore=plan.explore,
            latency_ms=round(lat.e2e_s * 1000, 3), **lat.as_ms(),
            tokens=TokenCounts(prompt=result.prompt_tokens, completion=result.completion_tokens),
            energy_j=None if energy is None else round(energy.joules, 6),
            energy_source=None if energy is None else energy.source,
            energy_attribution=None if energy is None else energy.attribution,
            finish_reason=result.finish_reason, fallback=fallback, request_id=query.request_id,
        )
        payload = json.loads(answer.model_dump_json())  # NaN threshold (forced) -> null
        return JSONResponse(payload, headers=self._headers(query, plan, backend, attempts))

    async def _infer_input(self, request: Request) -> tuple[InferJSONRequest, list[DecodedImage]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limits = self.gw.settings.images
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            async with request.form(max_files=limits.max_images, max_fields=32) as form:
                fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
                uploads = []
                for upload in form.getlist("image"):
                    if isinstance(upload, str):
                        raise APIError(400, "image must be a file part", code="invalid_image", param="image")
                    uploads.append(await upload.read(limits.max_image_bytes + 1))
            for key, kind in (("max_tokens", int), ("temperature", float)):
                if key in fields:
                    try:
                        fields[key] = kind(fields[key])
                    except ValueError:
                        raise APIError(400, f"{key} must be a number", code="invalid_value", param=key) from None
            body = _validated(InferJSONRequest, fields)
            return body, [decode_image_bytes(data, limits, f"image.{i}") for i, data in enumerate(uploads)]
        if ctype in ("application/json", ""):
            raw = await request.body()
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
            body = _validated(InferJSONRequest, obj)
            encoded = ([body.image] if body.image else []) + body.images
            if len(encoded) > limits.max_images:
                raise APIError(400, f"at most {limits.max_images} images per request", code="too_many_images",
                               param="images")
            return body, [decode_base64_image(v, limits, f"images.{i}") for i, v in enumerate(encoded)]
        raise APIError(415, "use multipart/form-data, a urlencoded form or application/json",
                       code="unsupported_media_type")

    def _log(self, query: Query, plan: Plan, backend: Backend, attempts: Attempts) -> None:
        log.info("%s model=%s scenario=%s decision=%s(%s) answered_by=%s/%s fallback=%s route_ms=%.2f",
                 query.request_id, query.model, query.scenario, plan.decision.tier, plan.decision.reason,
                 backend.tier, backend.name, attempts.failed or "-", plan.route_s * 1000)


def _usage(prompt: int, completion: int, energy: EnergyReading | None) -> Usage:
    """OpenAI usage plus vlrouter's energy fields (the SDK keeps unknown fields; a gateway in front of
    a vlrouter model server reads them back)."""
    extra = {} if energy is None else {"energy_j": round(energy.joules, 6), "energy_source": energy.source,
                                       "energy_attribution": energy.attribution}
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion, **extra)


def _finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length") else "stop"


def _validated(model, obj: Any):
    from pydantic import ValidationError

    if not isinstance(obj, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_value")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise APIError(400, f"{param}: {first['msg']}", code="invalid_value", param=param) from None
