"""The gateway runs the feature pipeline for every routed request."""

from __future__ import annotations

import httpx


def test_routed_requests_use_the_pipeline(make_gateway, features_config, photo_data_url):
    with make_gateway(None, features=features_config.model_dump()) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        body = {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": photo_data_url}},
            {"type": "text", "text": "What is this?"}]}], "max_tokens": 1}
        first = http.post("/v1/chat/completions", json=body)
        second = http.post("/v1/chat/completions", json=body)
        assert first.status_code == second.status_code == 200
        assert float(first.headers["x-vlrouter-route-ms"]) > 0
        metrics = http.get("/metrics").text
        assert 'vlrouter_feature_cache_total{encoder="image",result="miss"} 1.0' in metrics
        assert 'vlrouter_feature_cache_total{encoder="image",result="hit"} 1.0' in metrics
        forced = http.post("/v1/chat/completions", json={**body, "model": "edge"})
        assert forced.status_code == 200
        cache = sorted(line for line in metrics.splitlines() if line.startswith("vlrouter_feature_cache_total"))
        after = sorted(line for line in http.get("/metrics").text.splitlines()
                       if line.startswith("vlrouter_feature_cache_total"))
        assert cache and after == cache  # forced requests skip the pipeline: no hit, no miss
