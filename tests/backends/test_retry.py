"""OpenAIBackend's retries, error translation and fallback against a scripted real upstream (uvicorn
on loopback): each test scripts the upstream's answers and counts its calls."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn

from tests.conftest import ThreadServer, free_port
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
FINE = ({"choices": [{"delta": {"content": "fi"}}]}, {"choices": [{"delta": {"content": "ne"}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": COMPLETION["usage"]})


def sse(*chunks: dict, stall_after: int | None = None) -> tuple:
    return ("sse", chunks, stall_after)


def error(status: int, message: str, **headers: str) -> tuple:
    return ("json", status, {"error": {"message": message}}, headers)


def reply(status: int, body) -> tuple:
    return ("json", status, body, {})


class Upstream:
    """A scripted upstream app: each call takes the next step, then answers normally; ``calls`` holds
    the time of each call. Steps: ``error(...)``/``reply(...)``, ``sse(...)`` (optionally stalling
    after some chunks) and ``("sleep", s)`` (answer only after ``s`` seconds)."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls: list[float] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        body, more = b"", True
        while more:
            event = await receive()
            body, more = body + event.get("body", b""), event.get("more_body", False)
        self.calls.append(time.monotonic())
        step = self.script.pop(0) if self.script else None
        if step is not None and step[0] == "sleep":
            await asyncio.sleep(step[1])
            step = None
        if step is None:
            step = sse(*FINE) if json.loads(body).get("stream") else reply(200, COMPLETION)
        if step[0] == "json":
            _, status, payload, headers = step
            raw = json.dumps(payload).encode()
            extra = [(k.encode(), v.encode()) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"), *extra]})
            return await send({"type": "http.response.body", "body": raw})
        _, chunks, stall_after = step
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i, chunk in enumerate(chunks):
            if stall_after is not None and i == stall_after:
                await asyncio.sleep(3)  # longer than the backend's first_token_s (socket read timeout)
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def backend(url: str, name: str = "cloud", **overrides) -> OpenAIBackend:
    cfg = {"kind": "openai", "tier": "cloud", "base_url": url + "/v1", "model": "m",
           "backoff_s": 0, "max_retries": 2, "timeouts": {"connect_s": 1, "first_token_s": 1, "total_s": 5},
           **overrides}
    return OpenAIBackend(name, OpenAIBackendConfig(**cfg))


def run(upstream: Upstream | None, call, **overrides):
    """``call(backend)`` against ``upstream`` served on loopback (None: a port nobody listens on)."""
    async def go(url):
        b = backend(url, **overrides)
        try:
            return await call(b)
        finally:
            await b.aclose()

    if upstream is None:
        return asyncio.run(go(f"http://127.0.0.1:{free_port()}"))
    with ThreadServer(upstream) as server:
        return asyncio.run(go(server.url))


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
    with pytest.raises(BackendUnavailable, match=r"ClientConnectorError \(connecting, 3 attempt\(s\)\)") as info:
        run(None, lambda b: b.generate(REQUEST), max_retries=2)
    assert not isinstance(info.value, BackendTimeout)


def test_connect_error_then_success():
    """The first connect is refused (the port is bound but not listening); the retry, after the
    listener has come up, succeeds."""
    upstream = Upstream()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(upstream, log_level="warning", lifespan="on"))
    later = threading.Timer(0.15, lambda: threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                                           daemon=True).start())

    async def go():
        b = backend(f"http://127.0.0.1:{port}", backoff_s=1.0)  # the retry waits 0.5-1.5 s
        try:
            later.start()
            started = time.monotonic()
            return await b.generate(REQUEST), time.monotonic() - started
        finally:
            await b.aclose()

    try:
        result, elapsed = asyncio.run(go())
    finally:
        server.should_exit = True
        later.cancel()
    assert result.text == "fine" and len(upstream.calls) == 1
    assert elapsed >= 0.45  # it waited for a retry


def test_read_timeout_is_a_timeout_and_not_retried():
    upstream = Upstream(("sleep", 2.0))  # no answer within first_token_s (1 s)
    with pytest.raises(BackendTimeout, match="Timeout"):
        run(upstream, lambda b: b.generate(REQUEST), max_retries=2)
    assert len(upstream.calls) == 1


def test_read_timeout_mid_stream_is_a_timeout():
    upstream = Upstream(sse(*FINE, stall_after=1))

    async def go(b):
        seen = []
        with pytest.raises(BackendTimeout, match="Timeout"):
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
    upstream = Upstream(reply(200, {"choices": []}))
    with pytest.raises(BackendUnavailable, match="malformed"):
        run(upstream, lambda b: b.generate(REQUEST))


def dispatch(call, *upstreams: Upstream | None):
    """``call(dispatcher, chain)`` on a chain of backends b0, b1, ... (no retries) over ``upstreams``
    (None: a port nobody listens on)."""
    names = [f"b{i}" for i in range(len(upstreams))]
    servers = [ThreadServer(u).__enter__() if u is not None else None for u in upstreams]
    urls = [s.url if s is not None else f"http://127.0.0.1:{free_port()}" for s in servers]

    async def go():
        backends = {n: backend(url, n, max_retries=0) for n, url in zip(names, urls, strict=True)}
        try:
            return await call(Dispatcher(backends, {n: CircuitBreaker(CircuitConfig()) for n in names}), names)
        finally:
            await asyncio.gather(*(b.aclose() for b in backends.values()))

    try:
        return asyncio.run(go())
    finally:
        for server in servers:
            if server is not None:
                server.__exit__(None, None, None)


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
    upstreams = Upstream(error(503, "a")), None
    with pytest.raises(AllBackendsFailed, match=r"b0: .*HTTP 503.*b1: .*ClientConnectorError") as info:
        dispatch(lambda d, names: d.generate(names, REQUEST), *upstreams)
    assert (info.value.status, info.value.code) == (503, "backend_unavailable")
