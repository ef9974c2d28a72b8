"""A client that hangs up stops the edge model's generation: the next request is not queued behind it.

The in-process edge backend runs one generation at a time on its worker thread, so a generation that
kept going after its client left would hold the next request in the worker queue for the rest of
its tokens. The tiny random VLM decodes greedily, so the same prompt always runs to ``max_tokens``
(checked first, with the time that takes); the next request's ``queue_ms`` must then stay under
half of that time. The bound is generous: with the cancel the wait is about one decoding step
(milliseconds), without it nearly the whole generation (seconds).
"""

from __future__ import annotations

import time

import httpx

from tests.api.test_failure_paths import one_row

LONG = 1900  # tokens: ~3 s of the tiny VLM on one thread; prompt + LONG stays inside its 2,048 positions
PROMPT = "Tell me a long story"


def test_disconnect_stops_edge_generation(make_gateway, tmp_path):
    db = tmp_path / "decisions.db"
    with make_gateway(None, log={"enabled": True, "path": str(db)}) as gw, \
            httpx.Client(base_url=gw.url, timeout=120) as http:
        started = time.perf_counter()
        full = http.post("/infer", json={"text": PROMPT, "max_tokens": LONG, "model": "edge"}).json()
        full_ms = (time.perf_counter() - started) * 1000
        assert full["tokens"]["completion"] == LONG and full["finish_reason"] == "length"

        body = {"model": "edge", "stream": True, "max_tokens": LONG, "messages": [{"role": "user", "content": PROMPT}]}
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-request-id": "gone-1"}) as resp:
            for line in resp.iter_lines():
                if '"content":"' in line and '"content":""' not in line:  # the first text delta
                    break
        after = http.post("/infer", json={"text": "hi", "max_tokens": 1, "model": "edge"}).json()
    assert after["queue_ms"] < full_ms / 2, (after["queue_ms"], full_ms)
    row = one_row(db, "gone-1")
    assert (row["status"], row["error_code"], row["stream"]) == (200, "client_disconnected", 1)
