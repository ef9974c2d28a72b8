"""OpenTelemetry traces: the span tree of a request, trace context in and out, and OTLP export."""

from __future__ import annotations

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import ThreadServer, eventually, fixed_answer_app, gateway_settings
from vlrouter.api.app import build_app
from vlrouter.telemetry.tracing import Tracing

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
LONG = "Explain step by step why the sky in this picture looks the way it does, " + "in detail " * 40


@pytest.fixture
def traced(tiny_vlm, features_config):
    """A gateway with features on, its cloud an upstream that keeps each ``traceparent``, traced in memory."""
    exporter, state = InMemorySpanExporter(), {}
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with ThreadServer(fixed_answer_app(state)) as upstream:
        settings = gateway_settings(tiny_vlm, upstream.url + "/v1", features=features_config.model_dump())
        with ThreadServer(build_app(settings, tracing=Tracing(provider))) as gw:
            yield gw, exporter, state.setdefault("traceparents", [])


def tree(exporter) -> dict:
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    return {s.name: (s, by_id.get(s.parent.span_id) if s.parent else None) for s in spans}


ROOT_SPAN = "POST /v1/chat/completions"


def finished(exporter, *names: str) -> dict | None:
    """The span tree once every span in ``names`` has ended (the request span ends after its last byte)."""
    spans = tree(exporter)
    return spans if set(names) <= spans.keys() else None


def test_span_tree_of_a_request_with_client_trace_context(traced, photo_data_url):
    gw, exporter, seen = traced
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    sdk.chat.completions.create(
        model="vlrouter-auto", max_tokens=2, extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": photo_data_url}},
                                               {"type": "text", "text": LONG}]}])
    # the request span ends after the last byte was sent
    spans = eventually(lambda: finished(exporter, ROOT_SPAN, "chat tiny-cloud"))
    root, parent = spans["POST /v1/chat/completions"]
    assert parent is None and root.parent.span_id == int(CLIENT_SPAN, 16) and root.parent.is_remote
    assert {s.context.trace_id for s, _ in spans.values()} == {int(CLIENT_TRACE, 16)}  # one trace, the client's
    assert spans["decode"][1] is root and spans["route"][1] is root
    for encoder in ("features image_encoder", "features text_encoder", "features signals"):
        assert spans[encoder][1] is spans["route"][0]  # a span per encoder, inside routing
    backend, parent = spans["chat tiny-cloud"]
    assert parent is root and backend.kind.name == "CLIENT"
    assert seen == [f"00-{CLIENT_TRACE}-{backend.context.span_id:016x}-01"]  # passed on to the backend
    assert backend.attributes["gen_ai.provider.name"] == "openai"
    assert backend.attributes["gen_ai.usage.input_tokens"] == 3
    assert backend.attributes["gen_ai.usage.output_tokens"] == 1
    assert backend.attributes["gen_ai.server.time_to_first_token"] > 0
    a = root.attributes
    assert a["gen_ai.request.model"] == "vlrouter-auto" and a["http.response.status_code"] == 200
    assert a["vlrouter.tier"] == "cloud" and a["vlrouter.scenario"] == "quality"
    assert a["vlrouter.energy_source"] == "estimate" and a["vlrouter.energy_j"] > 0
    assert 0 <= a["vlrouter.margin"] <= 1 and "vlrouter.threshold" in a
    assert a["gen_ai.usage.output_tokens"] == 1 and a["gen_ai.server.time_to_first_token"] > 0


def test_streamed_request_ends_the_backend_span_with_the_stream(traced):
    gw, exporter, seen = traced
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    stream = sdk.chat.completions.create(model="cloud", max_tokens=4, stream=True,
                                         messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "fine"
    spans = eventually(lambda: finished(exporter, ROOT_SPAN, "chat tiny-cloud"))
    root, _ = spans["POST /v1/chat/completions"]
    backend, parent = spans["chat tiny-cloud"]
    assert parent is root and root.parent is None  # no client context: a new trace
    assert backend.attributes["gen_ai.usage.output_tokens"] == 2
    assert backend.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert backend.attributes["gen_ai.request.max_tokens"] == 4 and backend.attributes["vlrouter.tier"] == "cloud"
    assert backend.attributes["gen_ai.response.model"] == "tiny-cloud"
    # the stream's TTFT is counted from the request's arrival, so it lies within the request span
    assert 0 < backend.attributes["gen_ai.server.time_to_first_token"] < (root.end_time - root.start_time) / 1e9
    assert seen[-1].split("-")[1:3] == [f"{root.context.trace_id:032x}", f"{backend.context.span_id:016x}"]


def test_failed_request_is_a_span_with_its_error(traced):
    gw, exporter, _ = traced
    resp = httpx.post(gw.url + "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    root, _ = eventually(lambda: finished(exporter, ROOT_SPAN))[ROOT_SPAN]
    assert root.attributes["http.response.status_code"] == 400 and root.attributes["error.type"] == "invalid_json"


def test_tracing_is_off_by_default_and_adds_no_middleware(tiny_vlm):
    app = build_app(gateway_settings(tiny_vlm, None))
    assert "TracingMiddleware" not in {m.cls.__name__ for m in app.user_middleware}


def test_spans_are_exported_over_otlp_http(tiny_vlm):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received = []
    collector = FastAPI()

    @collector.post("/v1/traces")
    async def traces(request: Request):
        assert request.headers["content-type"] == "application/x-protobuf"
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(await request.body())
        received.extend(s.name for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans)
        return {}

    with ThreadServer(collector) as otlp:
        settings = gateway_settings(tiny_vlm, None, telemetry={"otlp_endpoint": otlp.url})
        with ThreadServer(build_app(settings)) as gw:
            assert httpx.post(gw.url + "/infer", json={"text": "hi", "max_tokens": 1}, timeout=60).status_code == 200
        # the gateway has stopped: its batch processor flushed on shutdown
    assert {"POST /infer", "decode", "route", "chat tiny-edge"} <= set(received)


def test_a_failed_backend_call_ends_its_span_as_an_error(tiny_vlm):
    from tests.backends.test_retry import Upstream, error

    exporter, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with ThreadServer(Upstream(error(500, "down"), error(500, "down"))) as upstream:
        settings = gateway_settings(tiny_vlm, upstream.url + "/v1")
        with ThreadServer(build_app(settings, tracing=Tracing(provider))) as gw:
            resp = httpx.post(gw.url + "/v1/chat/completions", json={
                "model": "cloud", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 503
    spans = eventually(lambda: finished(exporter, ROOT_SPAN, "chat tiny-cloud"))
    backend, parent = spans["chat tiny-cloud"]
    assert parent is spans[ROOT_SPAN][0] and backend.attributes["gen_ai.request.max_tokens"] == 3
    assert backend.status.status_code.name == "ERROR" and "HTTP 500" in backend.status.description
    assert [e.name for e in backend.events] == ["exception"]
    assert spans[ROOT_SPAN][0].attributes["http.response.status_code"] == 503
