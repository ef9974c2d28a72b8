"""The circuit breaker end to end: timeouts, 5xx and 429 from the cloud fall back to the edge, and after
``circuit.failures`` of them the cloud stops being called until a half-open probe.

A real gateway in front of two scripted upstreams (``tests.backends.test_retry.Upstream``, which
counts its calls). The cloud has ``max_retries: 0`` so each request that reaches it is one call.
The cooldown is waited for by polling (one request every 50 ms until the probe reaches the
upstream, with a deadline), not by a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest

from tests.backends.test_retry import Upstream, error
from tests.conftest import ThreadServer
from vlrouter.config import Settings

COOLDOWN_S = 2.0  # generous next to the three requests of milliseconds that must land inside it
FAILURES = 3
# a reasoning cue and ~120 words: the complexity rule sends it to the cloud under "quality"
ASK = {"messages": [{"role": "user", "content": "Explain step by step why " + "detail " * 120}], "max_tokens": 2}
FAILS = {"500": error(500, "down"), "429": error(429, "slow down"), "timeout": ("sleep", 1.5)}


@contextlib.contextmanager
def gateway(edge: Upstream, cloud: Upstream):
    from vlrouter.api.app import build_app

    def upstream(url: str, tier: str) -> dict:  # first_token_s 0.4: the "sleep" step is a read timeout
        return {"kind": "openai", "tier": tier, "base_url": url + "/v1", "model": tier[0], "max_retries": 0,
                "timeouts": {"connect_s": 5, "first_token_s": 0.4, "total_s": 5},
                "circuit": {"failures": FAILURES, "cooldown_s": COOLDOWN_S}}

    with ThreadServer(edge) as e, ThreadServer(cloud) as c:
        settings = Settings(features={"enabled": False}, log={"enabled": False},
                            routing={"default_scenario": "quality"},
                            backends={"edge": upstream(e.url, "edge"), "cloud": upstream(c.url, "cloud")})
        with ThreadServer(build_app(settings)) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
            yield http


def ask(http: httpx.Client, stream: bool = False) -> tuple[str, str | None]:
    """(tier that answered, x-vlrouter-fallback-from) of one auto-routed request, which must succeed."""
    if not stream:
        resp = http.post("/v1/chat/completions", json=ASK)
        assert resp.status_code == 200, resp.text
        return resp.headers["x-vlrouter-tier"], resp.headers.get("x-vlrouter-fallback-from")
    with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and lines[-1] == "data: [DONE]"
    assert all("error" not in json.loads(line[6:]) for line in lines[:-1])
    return resp.headers["x-vlrouter-tier"], resp.headers.get("x-vlrouter-fallback-from")


def until_probed(http: httpx.Client, cloud: Upstream, calls: int, timeout_s: float = 10.0) -> tuple[str, str | None]:
    """Send requests until the cloud sees call number ``calls + 1`` (the half-open probe); the answer
    to the request that probed. Every request before it must not reach the cloud."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = ask(http)
        if len(cloud.calls) > calls:
            assert len(cloud.calls) == calls + 1
            return answer
        assert answer == ("edge", "cloud")  # circuit open: straight to the edge, no call
        time.sleep(0.05)
    raise AssertionError(f"no half-open probe within {timeout_s} s (cooldown {COOLDOWN_S} s)")


@pytest.mark.parametrize("failure", list(FAILS))
def test_failures_fall_back_open_the_circuit_and_a_probe_closes_it(failure):
    edge, cloud = Upstream(), Upstream(*[FAILS[failure]] * (FAILURES + 1))  # then it answers normally
    with gateway(edge, cloud) as http:
        for i in range(FAILURES):  # each failure falls back to the edge
            assert ask(http) == ("edge", "cloud")
            assert len(cloud.calls) == i + 1
        for stream in (False, True, False):  # open: neither path calls the cloud
            assert ask(http, stream) == ("edge", "cloud")
        forced = http.post("/v1/chat/completions", json={**ASK, "model": "cloud"})  # no fallback for a forced model
        assert (forced.status_code, forced.json()["error"]["code"]) == (503, "backend_unavailable")
        assert "cloud: circuit open" in forced.json()["error"]["message"]
        assert len(cloud.calls) == FAILURES, "the open circuit still sent requests to the cloud"
        assert until_probed(http, cloud, FAILURES) == ("edge", "cloud")  # the probe fails: open again
        probe_failed_at = len(cloud.calls)
        assert ask(http) == ("edge", "cloud") and len(cloud.calls) == probe_failed_at  # re-opened at once
        assert until_probed(http, cloud, probe_failed_at) == ("cloud", None)  # this probe succeeds: closed
        assert [ask(http) for _ in range(2)] == [("cloud", None)] * 2
    assert len(cloud.calls) == probe_failed_at + 3
    assert len(edge.calls) >= FAILURES + 4
