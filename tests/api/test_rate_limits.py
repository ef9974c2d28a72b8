"""Per-key rate limits: requests and tokens per minute, OpenAI's x-ratelimit-* headers, 429 + Retry-After."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ThreadServer, fixed_answer_app
from vlrouter.api.limits import TokenBucket
from vlrouter.config import Settings
from vlrouter.telemetry.decision_log import read_rows

BODY = {"model": "edge", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def gateway(upstream_url: str, db, **limits) -> ThreadServer:
    from vlrouter.api.app import build_app

    return ThreadServer(build_app(Settings(
        features={"enabled": False}, log={"enabled": True, "path": str(db)},
        server={"api_keys": ["key-a", "key-b"], "rate_limits": limits},
        backends={"edge": {"kind": "openai", "tier": "edge", "base_url": upstream_url + "/v1", "model": "m"}})))


def ask(url: str, key: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"}, timeout=30)


def test_requests_per_minute_per_key(tmp_path):
    db = tmp_path / "log.sqlite"
    with ThreadServer(fixed_answer_app()) as upstream, gateway(upstream.url, db, requests_per_minute=3) as gw:
        a = [ask(gw.url, "key-a") for _ in range(4)]
        b = ask(gw.url, "key-b")
    assert [r.status_code for r in a] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in a[:3]] == ["2", "1", "0"]
    assert a[0].headers["x-ratelimit-limit-requests"] == "3"
    refused = a[3]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert b.status_code == 200 and b.headers["x-ratelimit-remaining-requests"] == "2"  # its own bucket
    rows = read_rows(db)
    assert sorted(r["status"] for r in rows) == [200] * 4 + [429]
    assert [r["error_code"] for r in rows if r["status"] == 429] == ["rate_limit_exceeded"]


def test_tokens_per_minute_are_charged_from_real_usage(tmp_path):
    # each answer uses 3 prompt + 1 completion tokens: 6 per minute admits two, the second takes it below 0
    with ThreadServer(fixed_answer_app()) as upstream, gateway(upstream.url, tmp_path / "l.sqlite",
                                                             tokens_per_minute=6) as gw:
        codes = [ask(gw.url, "key-a").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_token_bucket_refills_over_a_minute():
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])
    bucket.charge(60)
    assert not bucket.available(1) and bucket.wait_s(1) == pytest.approx(1.0)
    now[0] = 30.0
    assert bucket.available(30) and not bucket.available(31)
    assert bucket.reset_s() == pytest.approx(30.0)
