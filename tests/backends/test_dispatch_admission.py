"""The dispatcher's admission slots on the streamed path and after failures, and busy-versus-down.

Found by the mutation check (``scripts/mutation_check.sh fallback``): streamed requests must take an
admission slot like plain ones; a stream that fails before its first token must give its slot back;
and a chain where one backend is busy and the other is down is a 503 (something is broken), not a
429 (come back later). A real gateway in front of scripted upstreams (``test_retry.Upstream``); a
``("sleep", s)`` step holds a request in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.backends.test_retry import Upstream, error
from tests.conftest import ThreadServer
from vlrouter.backends.base import StreamDelta
from vlrouter.backends.fallback import _Replay
from vlrouter.config import Settings

ONE_SLOT = {"max_in_flight": 1, "max_queue": 0, "retry_after_s": 2}
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}  # the rule keeps it on the edge


@contextlib.contextmanager
def gateway(edge_up: Upstream, cloud_up: Upstream, **admission):
    from vlrouter.api.app import build_app

    def upstream(url: str, tier: str) -> dict:
        cfg = {"kind": "openai", "tier": tier, "base_url": url + "/v1", "model": tier[0], "max_retries": 0,
               "timeouts": {"connect_s": 5, "first_token_s": 10, "total_s": 20}, "circuit": {"failures": 100}}
        return {**cfg, "admission": admission[tier]} if tier in admission else cfg

    with ThreadServer(edge_up) as e, ThreadServer(cloud_up) as c:
        settings = Settings(features={"enabled": False}, log={"enabled": False},
                            backends={"edge": upstream(e.url, "edge"), "cloud": upstream(c.url, "cloud")})
        with ThreadServer(build_app(settings)) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
            yield http


@contextlib.contextmanager
def in_flight(http: httpx.Client, body: dict, upstream: Upstream):
    """One request held in flight by ``upstream`` (its script must start with a sleep) for the block."""
    calls = len(upstream.calls)
    thread = threading.Thread(target=http.post, args=("/v1/chat/completions",), kwargs={"json": body})
    thread.start()
    deadline = time.monotonic() + 10
    while len(upstream.calls) == calls:  # polled: the request is in flight once the upstream has it
        assert time.monotonic() < deadline, "the held request never reached the upstream"
        time.sleep(0.02)
    try:
        yield
    finally:
        thread.join(timeout=30)


def test_a_stream_takes_an_admission_slot():
    edge, cloud = Upstream(("sleep", 1.5)), Upstream()
    with gateway(edge, cloud, edge=ONE_SLOT) as http, in_flight(http, {**HI, "model": "edge"}, edge):
        busy = http.post("/v1/chat/completions", json={**HI, "model": "edge", "stream": True})
        assert (busy.status_code, busy.json()["error"]["code"]) == (429, "backend_busy")
        assert busy.headers["retry-after"] == "2"
    assert len(edge.calls) == 1


def test_the_queue_holds_max_queue_requests_and_the_busy_error_says_so():
    edge = Upstream(*[("sleep", 1.5)] * 3)  # each admitted request holds its slot for 1.5 s
    with gateway(edge, Upstream(), edge={"max_in_flight": 1, "max_queue": 2, "retry_after_s": 2}) as http, \
            ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: http.post("/v1/chat/completions", json={**HI, "model": "edge"}), range(4)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 429]  # 1 in flight + 2 queued, 1 refused
    (busy,) = [r.json()["error"] for r in answers if r.status_code == 429]
    assert busy["code"] == "backend_busy" and "edge: backend edge: busy (1 in flight, 2 queued)" in busy["message"]
    assert len(edge.calls) == 3


def test_every_way_a_stream_ends_gives_its_slot_back():
    # down (5xx: fall-back-able), refused (4xx: a 502, no fallback), then two that stream to the end
    edge, cloud = Upstream(), Upstream(error(500, "down"), error(400, "no"), error(500, "down"))
    with gateway(edge, cloud, cloud=ONE_SLOT) as http:
        expected = [(503, "backend_unavailable"), (502, "backend_rejected"), (503, "backend_unavailable")]
        for status, code in expected:
            resp = http.post("/v1/chat/completions", json={**HI, "model": "cloud", "stream": True})
            assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)
        for _ in range(2):
            ok = http.post("/v1/chat/completions", json={**HI, "model": "cloud", "stream": True})
            assert ok.status_code == 200 and ok.text.rstrip().endswith("data: [DONE]")
    assert len(cloud.calls) == 5  # each one was admitted: no slot leaked


def test_busy_edge_and_down_cloud_is_503_not_429():
    edge, cloud = Upstream(("sleep", 1.5)), Upstream(error(500, "down"))
    with gateway(edge, cloud, edge=ONE_SLOT) as http, in_flight(http, {**HI, "model": "edge"}, edge):
        resp = http.post("/v1/chat/completions", json=HI)  # auto: edge (busy), then the cloud (down)
        assert (resp.status_code, resp.json()["error"]["code"]) == (503, "backend_unavailable")
        assert "retry-after" not in resp.headers
        message = resp.json()["error"]["message"]  # what each backend said, in chain order
        assert "edge: backend edge: busy (1 in flight, 0 queued); cloud: backend cloud: HTTP 500" in message
    assert len(cloud.calls) == 1


@pytest.mark.parametrize("iterate", [False, True])
def test_replay_closes_its_stream_and_frees_its_slot_once(iterate):
    released, closed = [], []

    async def rest():
        try:
            yield StreamDelta(text="b")
        finally:
            closed.append(True)

    async def go():
        replay = _Replay(StreamDelta(text="a"), rest(), lambda: released.append(True))
        if iterate:
            assert [d.text async for d in replay] == ["a", "b"]
        await replay.aclose()
        await replay.aclose()

    asyncio.run(go())
    assert released == [True] and closed == ([True] if iterate else [])


class EndsAtOnce:
    """A third-party backend whose stream ends without a single delta (no shipped backend does this:
    both end every stream with a final delta)."""

    name, tier, kind, model = "quiet", "edge", "openai", "quiet-model"

    def __init__(self):
        self.closed = 0

    async def stream(self, request):
        try:
            return
            yield  # an async generator that yields nothing
        finally:
            self.closed += 1


def test_a_stream_that_ends_before_any_delta_is_an_empty_answer_that_frees_its_slot():
    from vlrouter.backends.base import GenerationRequest, Message
    from vlrouter.backends.fallback import Admission, Attempts, CircuitBreaker, Dispatcher
    from vlrouter.config import AdmissionConfig, CircuitConfig

    backend = EndsAtOnce()
    breaker = CircuitBreaker(CircuitConfig(failures=1))
    breaker.record_failure()
    breaker.opened_at = -1e9  # half-open: this stream is the probe
    admission = Admission(AdmissionConfig(max_in_flight=1, max_queue=0), "quiet")
    dispatcher = Dispatcher({"quiet": backend}, {"quiet": breaker}, {"quiet": admission})
    request = GenerationRequest(messages=[Message(role="user", parts=["hi"])], max_tokens=2)

    async def go():
        results = []
        for _ in range(2):  # the second only gets a slot if the first gave its slot back
            chosen, replay, attempts = await dispatcher.open_stream(["quiet"], request)
            deltas = [d async for d in replay]
            await replay.aclose()
            results.append((chosen, deltas, attempts))
        return results

    for chosen, deltas, attempts in asyncio.run(go()):
        assert chosen is backend and isinstance(attempts, Attempts) and attempts.failed == []
        assert [(d.text, d.finish_reason, d.prompt_tokens, d.completion_tokens) for d in deltas] == \
            [("", "stop", 0, 0)]
    assert breaker.state == "closed" and breaker.failures == 0  # an empty answer is still an answer
    assert backend.closed == 2 and not admission._slots.locked()
