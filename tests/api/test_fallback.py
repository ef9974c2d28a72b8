"""Fallback to the other tier when the chosen one is down, for plain and streamed requests."""

from __future__ import annotations

import httpx

from tests.conftest import ModelServer

CLOUD_QUERY = {  # image + reasoning cue under "quality": the router picks the cloud
    "model": "vlrouter-auto", "max_tokens": 3, "scenario": "quality",
}


def test_cloud_killed_falls_back_to_edge(make_gateway, tiny_vlm, tmp_path, photo_data_url):
    cloud = ModelServer(tiny_vlm, "tiny-cloud", tmp_path / "cloud.log")
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": photo_data_url}},
                                             {"type": "text", "text": "Explain why step by step"}]}]
    body = {**CLOUD_QUERY, "messages": messages}
    try:
        with make_gateway(cloud.base_url) as gw, httpx.Client(base_url=gw.url, timeout=60) as http:
            before = http.post("/v1/chat/completions", json=body)
            assert before.headers["x-vlrouter-tier"] == "cloud"
            assert "x-vlrouter-fallback-from" not in before.headers

            cloud.stop()
            after = http.post("/v1/chat/completions", json=body)
            assert after.status_code == 200
            assert after.headers["x-vlrouter-tier"] == "edge"
            assert after.headers["x-vlrouter-fallback-from"] == "cloud"

            with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp:
                assert resp.headers["x-vlrouter-tier"] == "edge"
                lines = [line for line in resp.iter_lines() if line]
            assert lines[-1] == "data: [DONE]"

            infer = http.post("/infer", json={"text": "Explain why step by step", "image": photo_data_url,
                                              "max_tokens": 2}).json()
            assert infer["tier"] == "edge"
            assert infer["fallback"]["from_backend"] == "cloud"

            ready = http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["backends"] == {"edge": True, "cloud": False}
            assert 'vlrouter_fallbacks_total{from_backend="cloud",to_backend="edge"}' in http.get("/metrics").text

            forced = http.post("/v1/chat/completions", json={**body, "model": "cloud"})
            assert forced.status_code == 503
            assert forced.json()["error"]["code"] == "backend_unavailable"
    finally:
        cloud.stop()
