"""Backpressure: a bounded in-flight limit and queue per backend; beyond it the other tier, else 429."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ThreadServer, fixed_answer_app
from vlrouter.config import Settings
from vlrouter.telemetry.decision_log import read_rows


def settings(edge_url: str, cloud_url: str, db) -> Settings:
    admission = {"max_in_flight": 1, "max_queue": 1, "retry_after_s": 3}
    return Settings(features={"enabled": False}, log={"enabled": True, "path": str(db)}, backends={
        "edge": {"kind": "openai", "tier": "edge", "base_url": edge_url + "/v1", "model": "e", "admission": admission},
        "cloud": {"kind": "openai", "tier": "cloud", "base_url": cloud_url + "/v1", "model": "c"}})


def burst(url: str, model: str, n: int) -> list[httpx.Response]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: httpx.post(url + "/v1/chat/completions", json=body, timeout=30), range(n)))


def test_beyond_the_queue_a_forced_request_gets_429_and_an_auto_request_the_other_tier(tmp_path):
    from vlrouter.api.app import build_app

    edge_state, cloud_state = {"calls": 0}, {"calls": 0}
    db = tmp_path / "log.sqlite"
    edge, cloud = ThreadServer(fixed_answer_app(edge_state, 0.8)), ThreadServer(fixed_answer_app(cloud_state, 0.8))
    with edge, cloud, ThreadServer(build_app(settings(edge.url, cloud.url, db))) as gw:
        forced = burst(gw.url, "edge", 4)
        codes = sorted(r.status_code for r in forced)
        assert codes == [200, 200, 429, 429]  # one in flight, one queued, two refused at once
        refused = [r for r in forced if r.status_code == 429]
        assert all(r.headers["retry-after"] == "3" for r in refused)
        assert {r.json()["error"]["code"] for r in refused} == {"backend_busy"}
        assert edge_state["calls"] == 2 and cloud_state["calls"] == 0  # refused ones never reached it

        auto = burst(gw.url, "vlrouter-auto", 4)  # a short text question: the rule picks the edge
        assert [r.status_code for r in auto] == [200] * 4
        tiers = sorted(r.headers["x-vlrouter-tier"] for r in auto)
        assert tiers == ["cloud", "cloud", "edge", "edge"]
        assert all(r.headers.get("x-vlrouter-fallback-from") == "edge" for r in auto
                   if r.headers["x-vlrouter-tier"] == "cloud")
        metrics = httpx.get(gw.url + "/metrics").text
    assert 'vlrouter_requests_total{backend="none",status="429",tier="none"} 2.0' in metrics
    assert 'vlrouter_backend_busy_total{backend="edge"} 4.0' in metrics  # 2 refused + 2 sent to the cloud
    rows = read_rows(db)
    assert sorted(r["status"] for r in rows) == [200] * 6 + [429] * 2
    assert sorted(r["error_code"] or "" for r in rows if r["status"] == 429) == ["backend_busy"] * 2
