"""Property-based fuzzing of the HTTP API with schemathesis ("Hold under abuse", item 6).

Schemathesis reads the gateway's own ``/openapi.json`` over the wire and generates requests, valid
and invalid, that go to a real gateway on loopback (edge: an in-process tiny VLM; cloud: a
``serve-model`` process of this module's own, so that nothing here can open a circuit breaker of the
session's shared ``model_server``). Three properties:

* ``test_no_server_error``: every operation, schema-valid and schema-invalid input: no 5xx, each
  response matches the schema the OpenAPI declares for it, and the shape the README promises
  (``protocol``'s models for answers, ``{"error": {message, type, param, code}}`` for every error).
* ``test_generation_parameters_reach_the_backends``: schema-valid chat completions with what the
  schema cannot express made acceptable (a user message, a served model, a valid scenario, no
  unsupported field), so that the fuzzed sampling parameters reach real generation on both tiers.
* ``test_declared_status_codes_and_content_types``: every status code and content type an operation
  answers with is declared in the served OpenAPI.

Bounded and reproducible: ``MAX_EXAMPLES`` cases per operation and test, ``derandomize`` (the cases
are the same on every run), no example database, no shrinking (a failing run is as short as a passing
one; schemathesis prints each failure as a ``curl`` command), generation capped at 8 tokens.

Cases come from ``APIOperation.as_strategy`` under hypothesis' ``@given``, not from
``schemathesis.pytest.from_fixture``: the latter (schemathesis 4.32) sets ``request.node._nodeid``,
which pytest 9 no longer has. A fuzz dictionary (``NASTY``) mixes values known to break model
servers into the generated ones: subnormal floats, the edges of int64, control and bidi characters,
and the VLM's own prompt tokens (``<image>`` is the processor's image placeholder).
"""

from __future__ import annotations

import copy

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ModelServer, ThreadServer, gateway_settings
from vlrouter.config import CircuitConfig
from vlrouter.protocol import ChatCompletion, ChatCompletionChunk, ErrorResponse, InferJSONRequest, InferResponse

MAX_EXAMPLES = 40  # cases per operation and test (an operation without input has a single one)
CHAT_EXAMPLES = 50  # test_generation_parameters_reach_the_backends: every case is a generation
MAX_TOKENS = 8  # the fuzzed gateway's generation.max_tokens_limit: every generation stays short
TIMEOUT_S = 60  # per request; a generation here takes well under a second
CHAT = "/v1/chat/completions"
# Every operation of the served schema (test_every_operation_is_fuzzed keeps this list whole).
OPERATIONS = ["GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/models", f"POST {CHAT}", "POST /infer",
              "POST /v1/feedback"]
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "response_format",
               "logprobs", "top_logprobs", "logit_bias", "audio")

NASTY = {
    "numbers": [5e-324, 1e-45, 1.1754943508222875e-38, 1e-300, 1e-7, 0.0, -0.0, 1.9999999999999998, 2.0],
    "integers": [0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1],
    # no lone surrogate: schemathesis' validator cannot encode one (the chat test adds it itself)
    "strings": ["", " ", "\x00", "\r\n", "\u202e", "\ufeff", "<image>", "<fake_token_around_image>",
                "<end_of_utterance>", "<|im_start|>", "<|endoftext|>"],
}
NASTY_FIELDS = {"temperature": "numbers", "top_p": "numbers", "score": "numbers", "seed": "integers",
                "max_tokens": "integers", "max_completion_tokens": "integers", "text": "strings",
                "messages[*].content": "strings", "stop": "strings", "model": "strings", "request_id": "strings"}

# No shrinking, so that a failing run stays bounded; the failure is printed as a curl command.
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                         phases=[Phase.explicit, Phase.generate], print_blob=False,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                HealthCheck.data_too_large])
CHECKS = [not_a_server_error, response_schema_conformance, response_headers_conformance]


def schemathesis_config(base_url: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "base-url": base_url,
        "request-timeout": TIMEOUT_S,
        "generation": {"deterministic": True, "database": "none"},
        "dictionaries": {name: {"values": values} for name, values in NASTY.items()},
        "parameters": {f"body.{field}": {"dictionary": name, "probability": 0.25}
                       for field, name in NASTY_FIELDS.items()},
    })


def declare_infer_body(spec: dict) -> None:
    """``/infer`` reads the request itself, so FastAPI's schema declares no body for it and the fuzzer
    would only ever send an empty POST: declare the README's JSON and multipart bodies where missing."""
    op = spec["paths"]["/infer"]["post"]
    if "requestBody" in op:
        return
    json_body = InferJSONRequest.model_json_schema()
    form = {"type": "object", "required": ["text"], "properties": {
        "text": {"type": "string", "minLength": 1},
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": 2},
        "scenario": {"type": "string"}, "model": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    }}
    op["requestBody"] = {"required": True, "content": {"application/json": {"schema": json_body},
                                                       "multipart/form-data": {"schema": form}}}


# ---------------------------------------------------------------- the gateway under test
@pytest.fixture(scope="module")
def fuzz_gateway(tiny_vlm, tmp_path_factory):
    from vlrouter.api.app import build_app

    tmp = tmp_path_factory.mktemp("fuzz")
    cloud = ModelServer(tiny_vlm, "tiny-cloud", tmp / "serve-model.log")
    try:
        settings_ = gateway_settings(tiny_vlm, cloud.base_url,
                                     generation={"default_max_tokens": 4, "max_tokens_limit": MAX_TOKENS},
                                     # a decision log, so that feedback gets past its 409 log_disabled
                                     log={"enabled": True, "path": str(tmp / "decisions.db")})
        for backend in settings_.backends.values():
            # Each case is judged on its own: a failure must not open a circuit that fails the next ones.
            backend.circuit = CircuitConfig(failures=10**9)
        with ThreadServer(build_app(settings_)) as gw:
            yield gw
    finally:
        cloud.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway):
    """The served schema, with the /infer body declared (see ``declare_infer_body``)."""
    spec = httpx.get(f"{fuzz_gateway.url}/openapi.json", timeout=30).raise_for_status().json()
    declare_infer_body(spec)
    return schemathesis.openapi.from_dict(spec, config=schemathesis_config(fuzz_gateway.url))


@pytest.fixture(scope="module")
def strict_schema(fuzz_gateway):
    """The served schema exactly as it is: status codes and content types are judged against it."""
    return schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json",
                                         config=schemathesis_config(fuzz_gateway.url))


def cases(api_schema, label: str, *, negative: bool = True) -> st.SearchStrategy:
    """Schema-valid and, where the operation takes input, schema-invalid cases for one operation."""
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served schema"
    modes = [GenerationMode.POSITIVE]
    if negative and (len(operation.body) or next(operation.iter_parameters(), None) is not None):
        modes.append(GenerationMode.NEGATIVE)
    return st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))


# ---------------------------------------------------------------- the shape the README promises
def assert_documented_shape(case, response) -> None:
    """Errors are OpenAI error objects, answers parse as the protocol models (the OpenAPI declares
    nothing for chat completions and /infer: those routes return a plain ``Response``)."""
    body = response.content
    if response.status_code >= 400:
        error = ErrorResponse.model_validate_json(body).error
        assert set(orjson.loads(body)["error"]) == {"message", "type", "param", "code"}, body
        assert error.message, body
        return
    if response.status_code != 200 or case.method.upper() != "POST":
        return
    if case.path == CHAT:
        if "text/event-stream" in response.headers.get("content-type", [""])[0]:
            assert_sse(body, cut_short=response.stream_cut_short)
        else:
            ChatCompletion.model_validate_json(body)
    elif case.path == "/infer":
        InferResponse.model_validate_json(body)


def assert_sse(body: bytes, cut_short: bool) -> None:
    events = [line.removeprefix(b"data: ") for line in body.split(b"\n\n") if line.startswith(b"data: ")]
    assert events, body
    if not cut_short:
        assert events[-1] == b"[DONE]", body[-500:]
    for event in events[:-1] if events[-1] == b"[DONE]" else events:
        obj = orjson.loads(event)
        assert "error" not in obj, f"an error in the stream: {obj}"  # a failure after the first token
        ChatCompletionChunk.model_validate(obj)


# ---------------------------------------------------------------- the tests
def test_every_operation_is_fuzzed(api_schema):
    assert sorted(op.ok().label for op in api_schema.get_all_operations()) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_error(api_schema, label):
    @FUZZ_SETTINGS
    @given(case=cases(api_schema, label))
    def fuzz(case):
        assert_documented_shape(case, case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S))

    fuzz()


MODELS = st.sampled_from(["vlrouter-auto", "edge", "cloud", "tiny-edge", "tiny-cloud"])
SCENARIOS = st.one_of(st.none(), st.sampled_from(["fast", "quality", "energy"]),
                      st.fixed_dictionaries({"speed": st.floats(0, 1), "quality": st.floats(0, 1)},
                                            optional={"energy": st.floats(0, 1)}))
TEXTS = st.one_of(st.sampled_from(["\ud800", "a\udfffb"]),  # lone surrogates: valid JSON escapes, not UTF-8
                  st.sampled_from([s for s in NASTY["strings"] if s.strip()]),
                  st.text(min_size=1, max_size=40).filter(str.strip))


def test_generation_parameters_reach_the_backends(api_schema):
    """Schema-valid chat completions, made acceptable where the schema cannot say what is (a 200 is
    expected): temperature, top_p, seed, stop, stream, max_tokens reach generation on both tiers."""

    @settings(FUZZ_SETTINGS, max_examples=CHAT_EXAMPLES)
    @given(case=cases(api_schema, f"POST {CHAT}", negative=False), model=MODELS, scenario=SCENARIOS, text=TEXTS)
    def fuzz(case, model, scenario, text):
        body = {k: v for k, v in copy.deepcopy(case.body).items() if k not in UNSUPPORTED}
        body.update(messages=[{"role": "user", "content": text}], model=model)
        if scenario is None or (isinstance(scenario, dict) and sum(scenario.values()) <= 0):
            body.pop("scenario", None)
        else:
            body["scenario"] = scenario
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(name), int | float):  # JSON Schema's integers include 9.0
                body[name] = 1 + (int(body[name]) - 1) % MAX_TOKENS
        if isinstance(body.get("seed"), int) and not -(2**63) <= body["seed"] < 2**63:  # the schema's int64
            body["seed"] %= 2**63
        stop = body.get("stop")
        if isinstance(stop, str | list):  # the validator's rules: at most 4 stop sequences, none empty
            body["stop"] = [s for s in ([stop] if isinstance(stop, str) else stop) if s][:4] or None
        case.body = body
        response = case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # not Unicode text: refused by name, not a 5xx
            assert response.status_code == 400, response.content[:1000]
            error = orjson.loads(response.content)["error"]  # pydantic-core's JSON parser refuses them already
            assert error["code"] == "invalid_json" or error["param"] == "messages.0.content", error
        else:
            assert response.status_code == 200, response.content[:1000]
        assert_documented_shape(case, response)

    fuzz()


@pytest.mark.parametrize("label", OPERATIONS)
def test_declared_status_codes_and_content_types(strict_schema, label):
    @FUZZ_SETTINGS
    @given(case=cases(strict_schema, label))
    def fuzz(case):
        case.call_and_validate(checks=[status_code_conformance, content_type_conformance], timeout=TIMEOUT_S)

    fuzz()
