"""One OpenAI-shaped error body for every failure, request validation included.

``{"error": {"message", "type", "param", "code"}}`` with the matching 4xx/5xx status.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlrouter.backends.base import BackendError, BackendRejected
from vlrouter.media import MediaError
from vlrouter.protocol import ErrorDetail, ErrorResponse
from vlrouter.router.scenario import ScenarioError

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_response(status: int, message: str, *, code: str | None = None, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(
        message=message, type=_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
        param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def to_api_error(exc: Exception) -> APIError:
    """Translate the domain errors that can reach the API boundary."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, MediaError):
        return APIError(exc.status, exc.message, code=exc.code, param=exc.param)
    if isinstance(exc, ScenarioError):
        return APIError(400, str(exc), code="invalid_scenario", param="scenario")
    if isinstance(exc, BackendRejected):
        return APIError(exc.status, str(exc), code="backend_rejected")
    if isinstance(exc, BackendError):
        return APIError(503, str(exc), code="backend_unavailable")
    log.exception("unhandled error", exc_info=exc)
    return APIError(500, "internal server error", code="internal_error")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None, "invalid_request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip(), None, "invalid_json"
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    return f"{param or 'body'}: {first.get('msg')}", param, "invalid_value"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return error_response(exc.status, exc.message, code=exc.code, param=exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param, code = _validation_message(exc)
        return error_response(400, message, code=code, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception):
        err = to_api_error(exc)
        return error_response(err.status, err.message, code=err.code, param=err.param)
