"""HTTP routes: thin handlers that fetch the serving object and call it."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from vlrouter.api.inputs import InputDecoder, Query, validated_json
from vlrouter.api.middleware import bearer_token
from vlrouter.api.pipeline import Answer, Gateway, Pipeline
from vlrouter.api.responses import chat_completion, infer_response, routing_headers
from vlrouter.api.sse import chat_stream
from vlrouter.config import TIERS
from vlrouter.errors import RequestError
from vlrouter.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    InferJSONRequest,
    InferResponse,
    ModelCard,
    ModelList,
)
from vlrouter.router.planner import AUTO_MODEL
from vlrouter.telemetry.tracing import NULL_SPAN


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def pipeline(request: Request) -> Pipeline:
    """The serving pipeline for this request, with its decision record (opened by the middleware)."""
    return Pipeline(gateway(request), getattr(request.state, "record", None), request.state)


async def require_key(request: Request) -> None:  # async: a sync dependency costs a thread hop
    keys = gateway(request).settings.server.api_keys
    if not keys:
        return
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise RequestError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    if not any(hmac.compare_digest(token.encode(), k.get_secret_value().encode()) for k in keys):
        raise RequestError(401, "incorrect API key", code="invalid_api_key")


_ERROR_STATUSES = {400: "invalid input", 401: "missing or wrong API key", 404: "unknown model or request id",
                   409: "the decision log is disabled", 413: "body, image or text too large",
                   415: "unsupported content type", 429: "rate limit reached, or every backend busy",
                   500: "internal error", 502: "the backend refused the request", 503: "no backend could answer"}
ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in _ERROR_STATUSES.items()}
api = APIRouter(dependencies=[Depends(require_key)], responses=ERRORS)
open_routes = APIRouter()

_INFER_FORM = {"type": "object", "required": ["text"], "properties": {
    "text": {"type": "string", "minLength": 1},
    "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
    "scenario": {"type": "string"}, "model": {"type": "string"},
    "max_tokens": {"type": "integer", "minimum": 1}, "temperature": {"type": "number", "minimum": 0, "maximum": 2}}}
# /infer reads its own body (JSON or a form): declared here so that clients and fuzzers see it
_INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": InferJSONRequest.model_json_schema()},
    "multipart/form-data": {"schema": _INFER_FORM},
    "application/x-www-form-urlencoded": {"schema": {**_INFER_FORM, "properties": {
        k: v for k, v in _INFER_FORM["properties"].items() if k != "image"}}}}}}


async def serve(request: Request, decode: Callable[[InputDecoder], Awaitable[Query]],
                shape: Callable[[Answer], dict]) -> Response:
    """Both endpoints: decode the wire request, serve it through the pipeline, shape the answer."""
    run = pipeline(request)
    try:
        with NULL_SPAN if run.gw.tracing is None else run.gw.tracing.span("decode"):
            query = await decode(run.gw.decoder)
    except Exception as exc:
        raise run.failed(exc, None) from exc
    if query.stream:
        return chat_stream(await run.open_stream(query))
    answer = await run.answer(query)
    return Response(orjson.dumps(shape(answer)), media_type="application/json",
                    headers=routing_headers(answer.routed, answer.backend, answer.attempts))


# The body is parsed by pydantic-core straight from bytes (twice as fast as json.loads + validation
# on a 5 MB body); app.py adds ChatCompletionRequest's schema to the OpenAPI components.
_CHAT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}}}


@api.post("/v1/chat/completions", openapi_extra=_CHAT_BODY, responses={200: {
    "model": ChatCompletion, "description": "a chat.completion, or with stream: true server-sent chat.completion.chunk "
    "events ending in [DONE]", "content": {"text/event-stream": {}}}})
async def chat_completions(request: Request):
    async def decode(decoder: InputDecoder) -> Query:
        return await decoder.chat(validated_json(ChatCompletionRequest, await request.body()), request)

    return await serve(request, decode, chat_completion)


@api.post("/infer", responses={200: {"model": InferResponse, "description": "the answer and the routing record"}},
          openapi_extra=_INFER_BODY)
async def infer(request: Request):
    return await serve(request, lambda decoder: decoder.infer(request), infer_response)


@api.post("/v1/feedback")
async def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    """Attach a quality score to a logged answer; ``vlrouter train --from-log`` learns from it."""
    decision_log = gateway(request).recorder.log
    if decision_log is None:
        raise RequestError(409, "the decision log is disabled (log.enabled: false): feedback has nowhere to go",
                       code="log_disabled")
    request_id = body.request_id.removeprefix("chatcmpl-")
    if not await asyncio.to_thread(decision_log.knows, request_id):
        raise RequestError(404, f"no logged request with id {body.request_id!r}", code="request_not_found",
                       param="request_id")
    decision_log.add_feedback(request_id, body.score, body.comment)
    return FeedbackResponse(request_id=request_id, score=body.score)


@api.get("/v1/models")
async def models(request: Request) -> ModelList:
    gw = gateway(request)
    cards = [ModelCard(id=AUTO_MODEL, owned_by="vlrouter", kind="router", router=gw.router.card())]
    cards += [ModelCard(id=t, owned_by="vlrouter", tier=t, kind="tier") for t in TIERS
              if gw.planner.first_of_tier(t)]
    for name, b in gw.backends.items():
        standin = name in gw.standins
        cards.append(ModelCard(id=b.model, owned_by="vlrouter-standin" if standin else "vlrouter",
                               tier=b.tier, kind=f"backend:{b.kind}:{name}", standin=standin))
    return ModelList(data=cards)


@open_routes.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@open_routes.get("/readyz", responses={503: {"description": "a backend is not ready (per-backend map)"}})
async def readyz(request: Request) -> JSONResponse:
    gw = gateway(request)
    status = {name: await b.health() for name, b in gw.backends.items()}
    ready = all(status.values())
    return JSONResponse({"ready": ready, "backends": status}, status_code=200 if ready else 503)


@open_routes.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    gw = gateway(request)
    metrics = gw.recorder.metrics
    return Response(metrics.render(), media_type=metrics.content_type)
