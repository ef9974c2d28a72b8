"""Pure-ASGI middleware (no BaseHTTPMiddleware: it buffers streams): request ids, body limits, decision log."""

from __future__ import annotations

import json
import random  # ids need uniqueness, not secrecy: no os.urandom syscall per request
import re
import time

from starlette.exceptions import HTTPException as StarletteHTTPException

from vlrouter.api.errors import error_response
from vlrouter.errors import RequestError

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Use a sane incoming ``X-Request-ID`` or make one; echo it on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else f"req-{random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(RequestError, StarletteHTTPException):
    """413 ``request_too_large`` raised while a body streams in. Also a starlette ``HTTPException``,
    so FastAPI's body parsing re-raises it instead of turning it into a 400."""

    def __init__(self, message: str):
        RequestError.__init__(self, 413, message, code="request_too_large")
        self.status_code, self.detail, self.headers = 413, message, None


class BodyLimitMiddleware:
    """413 when Content-Length exceeds the limit; counts chunked bodies as they arrive."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        message = f"request body exceeds {self.max_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = error_response(RequestError(413, message, code="request_too_large"))
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)


# the routes that serve models: logged (one row each) and rate-limited (api.limits)
SERVING_ROUTES = {("POST", "/v1/chat/completions"): "chat", ("POST", "/infer"): "infer"}


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class DecisionLogMiddleware:
    """Exactly one decision record per request to a logged route, however the request ends.

    The record is opened here (``scope["state"]["record"]``), filled by the serving pipeline through
    the gateway's ``Recorder``, and closed here with the status, error code and end-to-end time once
    the response has been sent (streams included) or the client has gone. Requests rejected before
    serving (bad JSON, 401, 413) are logged too.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        endpoint = SERVING_ROUTES.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        gateway = getattr(scope["app"].state, "gateway", None) if endpoint else None
        state = scope.setdefault("state", {})
        rec = gateway.recorder.open(endpoint, state.get("request_id")) if gateway is not None else None
        if rec is None:
            return await self.app(scope, receive, send)
        state["record"] = rec
        started = time.perf_counter()
        status, error_body = 500, []

        async def observe(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and sum(map(len, error_body)) < 65536:
                error_body.append(message.get("body", b""))
            await send(message)

        error_code = None
        try:
            await self.app(scope, receive, observe)
        except BaseException:
            error_code = "client_disconnected" if status < 400 else "internal_error"
            raise
        finally:
            if status >= 400 and error_code is None:
                error_code = error_code_of(b"".join(error_body))
            gateway.recorder.close(rec, status=status, e2e_ms=round((time.perf_counter() - started) * 1000, 3),
                                   error_code=error_code)


def error_code_of(body: bytes) -> str | None:
    """The ``error.code`` of an OpenAI-style error body."""
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
