"""One OpenAI-shaped error body for every failure, request validation and in-stream errors included.

``{"error": {"message", "type", "param", "code"}}`` with the matching 4xx/5xx status. Any exception
becomes a ``VLRouterError`` in ``as_error`` (unknown ones are logged and become a 500), and
``error_payload`` shapes it: the handlers, the body-limit middleware and the SSE stream all use these two.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlrouter.errors import RequestError, VLRouterError
from vlrouter.protocol import ErrorDetail, ErrorResponse

log = logging.getLogger(__name__)

_TYPES = {429: "rate_limit_error"}
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def validation_error(errors: list[dict]) -> RequestError:
    """A 400 naming the first field that pydantic (or FastAPI's body parsing) rejected."""
    if not errors:
        return RequestError(400, "invalid request", code="invalid_request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        message = f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip()
        return RequestError(400, message, code="invalid_json")
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return RequestError(400, f"{param or 'body'}: {first.get('msg')}", code="invalid_value", param=param)


def as_error(exc: BaseException) -> VLRouterError:
    """The project error an exception stands for (500 ``internal_error`` for anything unexpected)."""
    if isinstance(exc, VLRouterError):
        return exc
    if isinstance(exc, RequestValidationError):
        return validation_error(list(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        err = RequestError(exc.status_code, str(exc.detail))
        err.code = _HTTP_CODES.get(exc.status_code)  # starlette's own errors carry no code
        return err
    log.exception("unhandled error", exc_info=exc)
    return VLRouterError("internal server error")


def error_payload(err: VLRouterError) -> dict:
    """The OpenAI error object for ``err`` (``type`` follows the status class)."""
    kind = _TYPES.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    return ErrorResponse(error=ErrorDetail(message=err.message, type=kind, param=err.param,
                                           code=err.code)).model_dump()


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response for any exception."""
    err = as_error(exc)
    return JSONResponse(error_payload(err), status_code=err.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception FastAPI sees through ``error_response``."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, headers=getattr(exc, "headers", None))

    for kind in (VLRouterError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
