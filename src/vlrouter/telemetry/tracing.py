"""OpenTelemetry traces (``telemetry.otlp_endpoint``; off by default, and then nothing here runs).

One SERVER span per request to a serving route (``TracingMiddleware``), continuing the client's W3C
``traceparent`` when it sends one, with children for decoding the input, the features (a span per
encoder, and the signals), routing, and the backend call (a CLIENT span; OpenAI-compatible backends
get its ``traceparent``, so vLLM or another gateway continues the trace). Attributes follow the
OpenTelemetry GenAI semantic conventions (``gen_ai.*``: operation, provider, request/response model,
token usage, time to first token) plus ours (``vlrouter.*``: tier, scenario, margin, energy J and its
source, fallback), read from the request's ``DecisionRecord`` when it ends. The provider is this
app's own (no global tracer provider), exported in batches over OTLP/HTTP; tests pass a provider
with the SDK's in-memory exporter. When tracing is off the gateway holds ``None`` and each
instrumentation point costs one ``is None`` test.
"""

from __future__ import annotations

import contextlib
from typing import Any

from vlrouter.telemetry.record import DecisionRecord

NULL_SPAN = contextlib.nullcontext()  # reusable: what instrumentation points enter when tracing is off


class Tracing:
    """The app's tracer and W3C trace-context propagator."""

    def __init__(self, provider):
        from opentelemetry import context, trace  # imported only when tracing is on (the otel extra)
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("vlrouter")
        self.propagator = TraceContextTextMapPropagator()
        self.trace, self.context = trace, context

    @classmethod
    def from_settings(cls, cfg) -> Tracing | None:
        """An OTLP/HTTP exporting tracer for ``telemetry.otlp_endpoint``; None while it is unset."""
        if not cfg.otlp_endpoint:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise ValueError("telemetry.otlp_endpoint is set but OpenTelemetry is not installed: "
                             "pip install 'vlrouter[otel]'") from None

        endpoint = cfg.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider)

    def span(self, name: str, **attributes: Any):
        """A child of the current span, current while the ``with`` block runs."""
        return self.tracer.start_as_current_span(name, attributes=attributes or None)

    def request_span(self, scope: dict, endpoint: str):
        """The request's SERVER span, a child of the client's ``traceparent`` when it sent one."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        parent = self.propagator.extract(carrier) if carrier else None
        return self.tracer.start_as_current_span(
            f"{scope['method']} {scope['path']}", context=parent, kind=self.trace.SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"],
                        "gen_ai.operation.name": "chat", "vlrouter.endpoint": endpoint})

    def start_backend(self, backend, max_tokens: int) -> tuple[Any, object]:
        """The backend call's CLIENT span, made current (for ``headers``) until the caller detaches it."""
        span = self.tracer.start_span(
            f"chat {backend.model}", kind=self.trace.SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.provider.name": _provider(backend),
                        "gen_ai.request.model": backend.model, "gen_ai.request.max_tokens": max_tokens,
                        "vlrouter.backend": backend.name, "vlrouter.tier": backend.tier})
        return span, self.context.attach(self.trace.set_span_in_context(span))

    def detach(self, token: object) -> None:
        self.context.detach(token)

    def end_backend(self, span, backend, result, ttft_s: float | None, error: BaseException | None = None) -> None:
        """Close the backend span with what answered (after fallback, maybe another backend) and its usage."""
        if backend is not None:
            span.set_attributes({"gen_ai.response.model": backend.model, "vlrouter.backend": backend.name,
                                 "vlrouter.tier": backend.tier})
        if result is not None:
            span.set_attributes({"gen_ai.usage.input_tokens": result.prompt_tokens,
                                 "gen_ai.usage.output_tokens": result.completion_tokens})
            if result.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
        if ttft_s is not None:
            span.set_attribute("gen_ai.server.time_to_first_token", ttft_s)
        if error is not None:
            span.record_exception(error)
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, str(error)))
        span.end()

    def headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) of the current span, for an outgoing request."""
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        return carrier

    def annotate(self, span, rec: DecisionRecord, status: int) -> None:
        """The request span's attributes, from its decision record once the response is sent."""
        values = {
            "http.response.status_code": status, "gen_ai.request.model": rec.model_requested,
            "gen_ai.response.model": rec.decided_model, "gen_ai.usage.input_tokens": rec.prompt_tokens,
            "gen_ai.usage.output_tokens": rec.completion_tokens,
            "gen_ai.server.time_to_first_token": None if rec.ttft_ms is None else rec.ttft_ms / 1000,
            "vlrouter.request_id": rec.request_id, "vlrouter.tier": rec.tier,
            "vlrouter.decided_tier": rec.decided_tier, "vlrouter.scenario": rec.scenario_name,
            "vlrouter.policy": rec.policy, "vlrouter.margin": _margin(rec.scores),
            "vlrouter.threshold": rec.threshold, "vlrouter.energy_j": rec.energy_j,
            "vlrouter.energy_source": rec.energy_source, "vlrouter.fallback_from": rec.fallback_from,
            "vlrouter.route_ms": rec.route_ms, "error.type": rec.error_code,
        }
        span.set_attributes({k: v for k, v in values.items() if v is not None})
        if status >= 500:
            span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, rec.error_code or str(status)))

    def shutdown(self) -> None:
        """Export what is still batched."""
        self.provider.shutdown()


def _margin(scores: dict[str, float] | None) -> float | None:
    """The router's score that was compared with the threshold: the MLP's utility margin, or a rule's
    cloud benefit."""
    scores = scores or {}
    return scores.get("margin", scores.get("cloud_benefit"))


def _provider(backend) -> str:
    return "vlrouter.local" if backend.kind == "local" else "openai"


class TracingMiddleware:
    """The SERVER span around each request to a serving route (outside the decision-log middleware,
    so it sees the final status). It opens a ``DecisionRecord`` when the log is off, to read the
    attributes from."""

    def __init__(self, app, tracing: Tracing):
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope, receive, send):
        from vlrouter.api.middleware import SERVING_ROUTES, error_code_of

        endpoint = SERVING_ROUTES.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if endpoint is None:
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        status, error_body = 500, []

        async def observe(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and not error_body:
                error_body.append(message.get("body", b""))  # error bodies are one small JSON message
            await send(message)

        with self.tracing.request_span(scope, endpoint) as span:
            rec = state["record"] = DecisionRecord(endpoint=endpoint, request_id=state.get("request_id"))
            try:
                await self.app(scope, receive, observe)
            finally:
                rec = state["record"]  # the decision log's record, when the log is on
                if rec.error_code is None and error_body:
                    rec.error_code = error_code_of(error_body[0])
                self.tracing.annotate(span, rec, status)
