"""One error tree: every project error carries status, code and param, and the API shapes each the same way."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError

from vlrouter.api.errors import as_error, error_payload
from vlrouter.backends.base import BackendRejected, BackendTimeout, BackendUnavailable
from vlrouter.config import ConfigError
from vlrouter.errors import RequestError, VLRouterError
from vlrouter.media import MediaError
from vlrouter.router import ScenarioError, parse_scenario
from vlrouter.router.planner import UnknownModel


@pytest.mark.parametrize(("exc", "status", "code", "param", "kind"), [
    (MediaError("too big", code="image_too_large", status=413, param="image.0"), 413, "image_too_large", "image.0",
     "invalid_request_error"),
    (ScenarioError("nope"), 400, "invalid_scenario", "scenario", "invalid_request_error"),
    (UnknownModel("no such model", param="model"), 404, "model_not_found", "model", "invalid_request_error"),
    (RequestError(429, "slow down", code="rate_limited"), 429, "rate_limited", None, "rate_limit_error"),
    (BackendTimeout("backend cloud: ReadTimeout", backend="cloud"), 503, "backend_unavailable", None, "server_error"),
    (BackendRejected("backend cloud: HTTP 400", backend="cloud", status=502), 502, "backend_rejected", None,
     "server_error"),
    (ConfigError("bad setting"), 500, "invalid_config", None, "server_error"),
])
def test_each_error_shapes_from_its_own_fields(exc, status, code, param, kind):
    assert isinstance(exc, VLRouterError)
    err = as_error(exc)
    assert err is exc
    assert error_payload(err) == {"error": {"message": str(exc), "type": kind, "param": param, "code": code}}
    assert err.status == status


def test_parse_errors_are_scenario_errors_and_still_value_errors():
    with pytest.raises(ScenarioError) as info:
        parse_scenario("turbo")
    assert isinstance(info.value, ValueError) and info.value.status == 400


def test_backend_unavailable_is_the_fallback_class():
    assert issubclass(BackendTimeout, BackendUnavailable)
    assert not issubclass(BackendRejected, BackendUnavailable)


def test_validation_and_unknown_errors():
    err = as_error(RequestValidationError([{"type": "missing", "loc": ("body", "messages"), "msg": "Field required"}]))
    assert (err.status, err.code, err.param) == (400, "invalid_value", "messages")
    assert err.message == "messages: Field required"
    err = as_error(RuntimeError("secret detail"))
    assert (err.status, err.code, err.message) == (500, "internal_error", "internal server error")
