"""OpenAIBackend's retries, error translation and fallback against a scripted ``httpx.MockTransport``
upstream (no server): each test counts the upstream calls."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from vlrouter.backends.base import (
    BackendOverloaded,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    GenerationRequest,
    Message,
)
from vlrouter.backends.fallback import AllBackendsFailed, CircuitBreaker, Dispatcher
from vlrouter.backends.openai_http import OpenAIBackend
from vlrouter.config import CircuitConfig, OpenAIBackendConfig

REQUEST = GenerationRequest(messages=[Message("user", ["hi"])], max_tokens=4)
COMPLETION = {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def sse(*chunks: dict) -> httpx.Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


class Upstream:
    """A scripted upstream: each call takes the next step (a response, or an httpx exception class to
    raise), then answers normally; ``calls`` holds the time of each call."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(time.monotonic())
        step = self.script.pop(0) if self.script else None
        if isinstance(step, type) and issubclass(step, httpx.HTTPError):
            raise step(f"scripted {step.__name__}", request=request)
        if step is not None:
            return step
        if json.loads(request.content).get("stream"):
            return sse({"choices": [{"delta": {"content": "fi"}}]}, {"choices": [{"delta": {"content": "ne"}}]},
                       {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": COMPLETION["usage"]})
        return httpx.Response(200, json=COMPLETION)


def backend(upstream: Upstream, name: str = "cloud", **overrides) -> OpenAIBackend:
    cfg = {"kind": "openai", "tier": "cloud", "base_url": "http://upstream.test/v1", "model": "m",
           "backoff_s": 0, "max_retries": 2, "timeouts": {"connect_s": 1, "first_token_s": 1, "total_s": 5},
           **overrides}
    return OpenAIBackend(name, OpenAIBackendConfig(**cfg), transport=httpx.MockTransport(upstream))


def run(upstream: Upstream, call, **overrides):
    async def go():
        b = backend(upstream, **overrides)
        try:
            return await call(b)
        finally:
            await b.aclose()

    return asyncio.run(go())


async def streamed(b: OpenAIBackend) -> list:
    return [d async for d in b.stream(REQUEST)]


def test_503_then_200_is_retried_once():
    upstream = Upstream(error(503, "busy"))
    result = run(upstream, lambda b: b.generate(REQUEST))
    assert result.text == "fine" and result.completion_tokens == 1
    assert len(upstream.calls) == 2


def test_a_stream_is_retried_before_its_first_token():
    upstream = Upstream(error(502, "bad gateway"))
    deltas = run(upstream, streamed)
    assert "".join(d.text for d in deltas) == "fine" and deltas[-1].completion_tokens == 1
    assert len(upstream.calls) == 2


def test_429_honours_retry_after_then_is_overloaded():
    upstream = Upstream(*[error(429, "slow down", **{"retry-after": "0.1"})] * 3)
    with pytest.raises(BackendOverloaded, match=r"HTTP 429.*slow down") as info:
        run(upstream, lambda b: b.generate(REQUEST), max_retries=2)
    assert len(upstream.calls) == 3  # the first try and max_retries retries
    gaps = [b - a for a, b in zip(upstream.calls, upstream.calls[1:], strict=False)]
    assert min(gaps) >= 0.09  # backoff_s is 0: only Retry-After makes it wait
    assert (info.value.status, info.value.code, info.value.backend) == (503, "backend_unavailable", "cloud")


def test_5xx_after_retries_is_unavailable():
    upstream = Upstream(*[error(500, "oops")] * 2)
    with pytest.raises(BackendUnavailable, match="HTTP 500"):
        run(upstream, lambda b: b.generate(REQUEST), max_retries=1)
    assert len(upstream.calls) == 2


def test_400_is_rejected_as_a_bad_gateway_and_not_retried():
    upstream = Upstream(error(400, "no images please"))
    with pytest.raises(BackendRejected, match="no images please") as info:
        run(upstream, lambda b: b.generate(REQUEST), max_retries=3)
    assert (info.value.status, info.value.code) == (502, "backend_rejected")
    assert len(upstream.calls) == 1


def test_connect_error_is_retried_then_unavailable():
    upstream = Upstream(*[httpx.ConnectError] * 3)
    with pytest.raises(BackendUnavailable, match="ConnectError") as info:
        run(upstream, lambda b: b.generate(REQUEST), max_retries=2)
    assert not isinstance(info.value, BackendTimeout)
    assert len(upstream.calls) == 3


def test_connect_error_then_success():
    upstream = Upstream(httpx.ConnectTimeout)
    assert run(upstream, lambda b: b.generate(REQUEST)).text == "fine"
    assert len(upstream.calls) == 2


def test_read_timeout_is_a_timeout_and_not_retried():
    upstream = Upstream(httpx.ReadTimeout)
    with pytest.raises(BackendTimeout, match="ReadTimeout"):
        run(upstream, lambda b: b.generate(REQUEST), max_retries=2)
    assert len(upstream.calls) == 1


def test_read_timeout_mid_stream_is_a_timeout():
    async def body():
        yield b'data: {"choices": [{"delta": {"content": "fi"}}]}\n\n'
        raise httpx.ReadTimeout("scripted stall")

    upstream = Upstream(httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"}))

    async def go(b):
        seen = []
        with pytest.raises(BackendTimeout, match="ReadTimeout"):
            async for delta in b.stream(REQUEST):
                seen.append(delta.text)
        return seen

    assert run(upstream, go) == ["fi"]
    assert len(upstream.calls) == 1


def test_in_band_stream_error_is_unavailable():
    upstream = Upstream(sse({"error": {"message": "upstream exploded"}}))
    with pytest.raises(BackendUnavailable, match="upstream exploded"):
        run(upstream, streamed)
    assert len(upstream.calls) == 1  # the response had started: not resent


def test_malformed_completion_is_unavailable():
    upstream = Upstream(httpx.Response(200, json={"choices": []}))
    with pytest.raises(BackendUnavailable, match="malformed"):
        run(upstream, lambda b: b.generate(REQUEST))


def dispatch(call, *upstreams: Upstream):
    """``call(dispatcher, chain)`` on a chain of backends b0, b1, ... (no retries) over ``upstreams``."""
    names = [f"b{i}" for i in range(len(upstreams))]

    async def go():
        backends = {n: backend(u, n, max_retries=0) for n, u in zip(names, upstreams, strict=True)}
        try:
            return await call(Dispatcher(backends, {n: CircuitBreaker(CircuitConfig()) for n in names}), names)
        finally:
            await asyncio.gather(*(b.aclose() for b in backends.values()))

    return asyncio.run(go())


def test_fallback_to_the_next_backend():
    first, second = Upstream(error(503, "down"), sse({"error": "gone"})), Upstream()

    async def go(dispatcher, names):
        result, used, attempts = await dispatcher.generate(names, REQUEST)
        stream_used, stream, stream_attempts = await dispatcher.open_stream(names, REQUEST)
        text = "".join([d.text async for d in stream])
        return result, used.name, attempts, stream_used.name, text, stream_attempts

    result, used, attempts, stream_used, text, stream_attempts = dispatch(go, first, second)
    assert result.text == "fine" and used == "b1" and attempts.fell_back
    assert attempts.failed[0][0] == "b0" and "HTTP 503" in attempts.failed[0][1]
    assert stream_used == "b1" and text == "fine" and "gone" in stream_attempts.failed[0][1]
    assert (len(first.calls), len(second.calls)) == (2, 2)


def test_a_rejection_does_not_fall_back():
    first, second = Upstream(error(422, "bad request")), Upstream()
    with pytest.raises(BackendRejected):
        dispatch(lambda d, names: d.generate(names, REQUEST), first, second)
    assert (len(first.calls), len(second.calls)) == (1, 0)


def test_all_backends_failed_is_503():
    upstreams = Upstream(error(503, "a")), Upstream(httpx.ConnectError)
    with pytest.raises(AllBackendsFailed, match=r"b0: .*HTTP 503.*b1: .*ConnectError") as info:
        dispatch(lambda d, names: d.generate(names, REQUEST), *upstreams)
    assert (info.value.status, info.value.code) == (503, "backend_unavailable")
