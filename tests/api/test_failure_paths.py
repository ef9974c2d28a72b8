"""Every way a request can fail leaves exactly one decision-log row with its status and error code.

A real gateway (uvicorn on loopback, decision log on) in front of two scripted OpenAI-compatible
upstreams (``tests.backends.test_retry.Upstream``) that fail on cue: bad input of each kind, a
missing key, an unknown model, bodies over the limit (with and without Content-Length), the wrong
content type, a rate limit, an upstream 5xx and 4xx, a client that hangs up mid-stream, an upstream
that fails after its first chunk, and a streamed request that falls back to the other tier. Each
request carries its own ``X-Request-ID`` so its row is found by id; rows are polled for with a
deadline (the log's writer thread flushes every 50 ms).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid

import httpx
import pytest

from tests.backends.test_retry import Upstream, error, sse
from tests.conftest import ThreadServer
from vlrouter.config import Settings
from vlrouter.telemetry.decision_log import read_rows

KEY = {"authorization": "Bearer sk-test"}
CHAT = "/v1/chat/completions"
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
# a reasoning cue and ~120 words: the complexity rule sends it to the cloud under "quality"
CLOUD_TEXT = "Explain step by step why " + "detail " * 120
MAX_BODY = 4096


def settings(edge_url: str, cloud_url: str, db, **server) -> Settings:
    def upstream(url: str, tier: str) -> dict:
        return {"kind": "openai", "tier": tier, "base_url": url + "/v1", "model": tier[0], "max_retries": 0,
                "timeouts": {"connect_s": 5, "first_token_s": 5, "total_s": 10}}

    return Settings(features={"enabled": False}, log={"enabled": True, "path": str(db)},
                    routing={"default_scenario": "quality"},
                    server={"api_keys": ["sk-test"], "max_body_bytes": MAX_BODY, **server},
                    backends={"edge": upstream(edge_url, "edge"), "cloud": upstream(cloud_url, "cloud")})


class Stack:
    """The two upstreams and the gateway, with the decision log's path; ``close`` stops all three."""

    def __init__(self, tmp_path, **server):
        from vlrouter.api.app import build_app

        self.edge, self.cloud = Upstream(), Upstream()
        self.db = tmp_path / "decisions.db"
        self._exit = contextlib.ExitStack()
        try:
            edge = self._exit.enter_context(ThreadServer(self.edge))
            cloud = self._exit.enter_context(ThreadServer(self.cloud))
            self.gw = self._exit.enter_context(ThreadServer(build_app(settings(edge.url, cloud.url, self.db,
                                                                               **server))))
            self.http = self._exit.enter_context(httpx.Client(base_url=self.gw.url, timeout=30))
        except BaseException:
            self._exit.close()
            raise

    def close(self) -> None:
        self._exit.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("failure-paths"))
    yield s
    s.close()


def new_id() -> str:
    return f"fp-{uuid.uuid4().hex}"


def rows_for(db, request_id: str, timeout_s: float = 10.0) -> list[dict]:
    """The rows of one request, once at least one is there (polled with a deadline), plus a short
    grace so a duplicate row would have been written too."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [r for r in read_rows(db) if r["request_id"] == request_id] if db.is_file() else []
        if found:
            time.sleep(0.2)  # two writer periods: a second row for the same request would be in by now
            return [r for r in read_rows(db) if r["request_id"] == request_id]
        time.sleep(0.05)
    return []


def one_row(db, request_id: str) -> dict:
    rows = rows_for(db, request_id)
    assert len(rows) == 1, rows
    return rows[0]


def chunked(data: bytes, piece: int = 1000) -> list[bytes]:
    """A body httpx sends chunked (an iterable, no Content-Length); a list, so that it can be sent again."""
    return [data[i:i + piece] for i in range(0, len(data), piece)]


# (what to send, expected status, expected error code): each sent with its own request id
REJECTED = {
    "400 malformed json": (dict(url=CHAT, content=b"{broken", headers={"content-type": "application/json", **KEY}),
                           400, "invalid_json"),
    "400 bad base64": (dict(url="/infer", json={"text": "hi", "image": "@@@"}, headers=KEY), 400, "invalid_base64"),
    "401 no key": (dict(url=CHAT, json=HI), 401, "invalid_api_key"),
    "401 wrong key": (dict(url="/infer", json={"text": "hi"}, headers={"authorization": "Bearer sk-bad"}),
                      401, "invalid_api_key"),
    "404 unknown model": (dict(url=CHAT, json={**HI, "model": "gpt-17"}, headers=KEY), 404, "model_not_found"),
    "413 content-length": (dict(url=CHAT, content=b"x" * (MAX_BODY + 1),
                                headers={"content-type": "application/json", **KEY}), 413, "request_too_large"),
    "413 chunked": (dict(url=CHAT, content=chunked(b"x" * (3 * MAX_BODY)),
                         headers={"content-type": "application/json", **KEY}), 413, "request_too_large"),
    "415 infer text/plain": (dict(url="/infer", content=b"text", headers={"content-type": "text/plain", **KEY}),
                             415, "unsupported_media_type"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_each_rejection_is_logged_once_with_its_code(stack, case):
    kwargs, status, code = REJECTED[case]
    rid = new_id()
    kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), "x-request-id": rid}}
    resp = stack.http.post(**kwargs)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"]) == (status, code)
    assert row["tier"] is None and row["backend"] is None  # no backend answered


@pytest.mark.parametrize(("upstream_status", "status", "code"), [(500, 503, "backend_unavailable"),
                                                                  (503, 503, "backend_unavailable"),
                                                                  (400, 502, "backend_rejected")])
def test_upstream_errors_on_a_forced_backend(stack, upstream_status, status, code):
    stack.cloud.script[:] = [error(upstream_status, "upstream says no")]
    calls = len(stack.cloud.calls)
    rid = new_id()
    resp = stack.http.post(CHAT, json={**HI, "model": "cloud"}, headers={**KEY, "x-request-id": rid})
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
    assert len(stack.cloud.calls) == calls + 1  # max_retries 0: one call, and no fallback for a forced model
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"]) == (status, code)


def test_client_disconnect_mid_stream_is_logged(stack):
    # the upstream sends one chunk, then stalls for 3 s: the client hangs up in between
    stack.cloud.script[:] = [sse({"choices": [{"delta": {"content": "fi"}}]},
                                 {"choices": [{"delta": {"content": "ne"}}]}, stall_after=1)]
    rid = new_id()
    with stack.http.stream("POST", CHAT, json={**HI, "model": "cloud", "stream": True},
                           headers={**KEY, "x-request-id": rid}) as resp:
        lines = resp.iter_lines()
        assert json.loads(next(lines)[6:])["choices"][0]["delta"]["role"] == "assistant"
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"], row["stream"], row["tier"]) == (200, "client_disconnected", 1, "cloud")


def test_mid_stream_failure_gives_an_in_band_error_then_done(stack):
    stack.cloud.script[:] = [sse({"choices": [{"delta": {"content": "fi"}}]},
                                 {"error": {"message": "the upstream died"}})]
    rid = new_id()
    with stack.http.stream("POST", CHAT, json={**HI, "model": "cloud", "stream": True},
                           headers={**KEY, "x-request-id": rid}) as resp:
        assert resp.status_code == 200  # the headers had gone before the failure
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    texts = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines[:-2]]
    assert texts == ["", "fi"]  # the role chunk, then the one text chunk the upstream sent
    err = json.loads(lines[-2][6:])["error"]
    assert err["code"] == "backend_unavailable" and "the upstream died" in err["message"]
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"], row["tier"]) == (200, "stream_error", "cloud")


def test_streamed_fallback_names_the_tier_it_fell_back_from(stack):
    stack.cloud.script[:] = [error(502, "bad gateway")]
    rid = new_id()
    body = {"messages": [{"role": "user", "content": CLOUD_TEXT}], "max_tokens": 2, "stream": True}
    with stack.http.stream("POST", CHAT, json=body, headers={**KEY, "x-request-id": rid}) as resp:
        assert resp.headers["x-vlrouter-tier"] == "edge"
        assert resp.headers["x-vlrouter-fallback-from"] == "cloud"
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in lines[:-1] if json.loads(line[6:])["choices"]) == "fine"
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"], row["decided_tier"], row["tier"], row["fallback_from"]) == \
        (200, None, "cloud", "edge", "cloud")


def test_rate_limited_request_is_logged_once(tmp_path):
    stack = Stack(tmp_path, rate_limits={"requests_per_minute": 2})
    try:
        ids = [new_id() for _ in range(3)]
        codes = [stack.http.post(CHAT, json={**HI, "model": "edge"}, headers={**KEY, "x-request-id": rid}).status_code
                 for rid in ids]
        assert codes == [200, 200, 429]
        refused = one_row(stack.db, ids[2])
        assert (refused["status"], refused["error_code"]) == (429, "rate_limit_exceeded")
        assert [one_row(stack.db, rid)["status"] for rid in ids[:2]] == [200, 200]
        assert len(stack.edge.calls) == 2  # the refused one never reached a backend
    finally:
        stack.close()


def test_a_streamed_answer_is_accounted_like_a_plain_one(stack):
    """(From the mutation check's survivors in ``Relay``.) The upstream streams "fi", "ne" and then
    usage (3 prompt + 1 completion tokens): the row and the usage chunk carry them, with a TTFT."""
    rid = new_id()
    body = {**HI, "model": "cloud", "stream": True, "stream_options": {"include_usage": True}}
    with stack.http.stream("POST", CHAT, json=body, headers={**KEY, "x-request-id": rid}) as resp:
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line and line != "data: [DONE]"]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and (usage["prompt_tokens"], usage["completion_tokens"]) == (3, 1)
    assert usage["energy_source"] == "estimate" and usage["energy_j"] > 0  # a remote backend that reports none
    row = one_row(stack.db, rid)
    assert (row["status"], row["error_code"], row["prompt_tokens"], row["completion_tokens"]) == (200, None, 3, 1)
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["e2e_ms"]
    assert (row["energy_source"], row["energy_j"]) == ("estimate", usage["energy_j"])
    stack.cloud.script[:] = [sse({"choices": [{"delta": {"content": "fi"}}]}, {"error": {"message": "died"}})]
    with stack.http.stream("POST", CHAT, json=body, headers=KEY) as resp:
        assert [line for line in resp.iter_lines() if line][-1] == "data: [DONE]"
    metrics = stack.http.get("/metrics").text
    assert 'vlrouter_requests_total{backend="cloud",status="200",tier="cloud"}' in metrics
    assert 'vlrouter_requests_total{backend="cloud",status="503",tier="cloud"}' in metrics  # the failed stream
