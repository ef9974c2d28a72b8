"""HTTP routes: thin handlers that fetch the serving object and call it."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from vlrouter.api.errors import APIError
from vlrouter.api.serving import AUTO_MODEL, ChatServing, Gateway
from vlrouter.config import TIERS
from vlrouter.protocol import ChatCompletionRequest, FeedbackRequest, FeedbackResponse, ModelCard, ModelList


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def require_key(request: Request) -> None:
    keys = gateway(request).settings.server.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    if not any(hmac.compare_digest(token.encode(), k.get_secret_value().encode()) for k in keys):
        raise APIError(401, "incorrect API key", code="invalid_api_key")


api = APIRouter(dependencies=[Depends(require_key)])
open_routes = APIRouter()


@api.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return await ChatServing(gateway(request)).chat(body, request)


@api.post("/infer")
async def infer(request: Request):
    return await ChatServing(gateway(request)).infer(request)


@api.post("/v1/feedback")
async def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
    """Attach a quality score to a logged answer; ``vlrouter train --from-log`` learns from it."""
    decision_log = gateway(request).decision_log
    if decision_log is None:
        raise APIError(409, "the decision log is disabled (log.enabled: false): feedback has nowhere to go",
                       code="log_disabled")
    request_id = body.request_id.removeprefix("chatcmpl-")
    if not await asyncio.to_thread(decision_log.knows, request_id):
        raise APIError(404, f"no logged request with id {body.request_id!r}", code="request_not_found",
                       param="request_id")
    decision_log.add_feedback(request_id, body.score, body.comment)
    return FeedbackResponse(request_id=request_id, score=body.score)


@api.get("/v1/models")
async def models(request: Request) -> ModelList:
    gw = gateway(request)
    cards = [ModelCard(id=AUTO_MODEL, owned_by="vlrouter", kind="router")]
    cards += [ModelCard(id=t, owned_by="vlrouter", tier=t, kind="tier") for t in TIERS if gw.first_of_tier(t)]
    for name, b in gw.backends.items():
        standin = name in gw.standins
        cards.append(ModelCard(id=b.model, owned_by="vlrouter-standin" if standin else "vlrouter",
                               tier=b.tier, kind=f"backend:{b.kind}:{name}", standin=standin))
    return ModelList(data=cards)


@open_routes.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@open_routes.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    gw = gateway(request)
    status = {name: await b.health() for name, b in gw.backends.items()}
    ready = all(status.values())
    return JSONResponse({"ready": ready, "backends": status}, status_code=200 if ready else 503)


@open_routes.get("/metrics")
async def metrics(request: Request) -> Response:
    gw = gateway(request)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
