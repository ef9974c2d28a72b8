"""One decision-log row per request, whatever happens to it."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ModelServer

GOOD = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
CLOUD = {"messages": [{"role": "user", "content": "Explain step by step why " + "detail " * 120}], "max_tokens": 2}


def rows(path) -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    out = db.execute("SELECT * FROM decisions").fetchall()
    db.close()
    return out


def send(client: httpx.Client, i: int) -> int:
    kind = i % 6
    if kind == 0:
        return client.post("/v1/chat/completions", content=b"{broken", headers={"content-type": "application/json"}
                           ).status_code
    if kind == 1:
        return client.post("/infer", json={"text": "hi", "image": "@@@"}).status_code
    if kind == 2:
        with client.stream("POST", "/v1/chat/completions", json={**GOOD, "stream": True, "max_tokens": 3}) as r:
            for _ in r.iter_lines():
                pass
            return r.status_code
    if kind == 3:
        return client.post("/infer", json={"text": "hello", "max_tokens": 2}).status_code
    if kind == 4:
        return client.post("/v1/chat/completions", json=CLOUD).status_code
    return client.post("/v1/chat/completions", json=GOOD).status_code


def test_one_row_per_request_under_load_with_bad_input_and_a_killed_backend(make_gateway, tiny_vlm, tmp_path,
                                                                            energy_source):
    db = tmp_path / "decisions.db"
    cloud = ModelServer(tiny_vlm, "tiny-cloud", tmp_path / "cloud.log")
    n = 200
    try:
        with make_gateway(cloud.base_url, log={"enabled": True, "path": str(db)}) as gw, \
                httpx.Client(base_url=gw.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            first = list(pool.map(lambda i: send(client, i), range(n // 2)))
            cloud.stop()  # the cloud backend dies halfway: its requests fall back to the edge
            second = list(pool.map(lambda i: send(client, i), range(n // 2, n)))
            # a client that hangs up mid-stream is logged as well
            with client.stream("POST", "/v1/chat/completions",
                               json={**GOOD, "model": "edge", "stream": True, "max_tokens": 300}) as r:
                next(r.iter_lines())
    finally:
        cloud.stop()
    statuses = first + second
    logged = rows(db)  # the gateway has shut down: every pending row is flushed
    assert len(logged) == n + 1
    assert len({r["request_id"] for r in logged}) == n + 1
    assert sorted(r["status"] for r in logged if r["status"] != 200) == sorted(s for s in statuses if s != 200)
    by_code = {}
    for r in logged:
        by_code[r["error_code"]] = by_code.get(r["error_code"], 0) + 1
    assert by_code["invalid_json"] == n // 6 + (1 if n % 6 > 0 else 0)
    assert by_code["invalid_base64"] == n // 6 + (1 if n % 6 > 1 else 0)
    ok = [r for r in logged if r["status"] == 200 and r["tier"]]
    assert all(r["backend"] and r["scenario_name"] == "quality" and r["e2e_ms"] > 0 for r in ok)
    assert any(r["fallback_from"] == "cloud" and r["tier"] == "edge" for r in ok)
    assert any(r["decided_tier"] == "cloud" and r["fallback_from"] is None for r in ok)
    assert all(r["content"] is None for r in logged)  # log_content is off by default
    (gone,) = [r for r in ok if r["error_code"] == "client_disconnected"]
    assert gone["stream"] == 1 and gone["energy_j"] is None  # cancelled before the backend reported
    ok = [r for r in ok if r is not gone]
    # every answered request carries its latency terms and energy, labelled with where it came from
    assert {r["energy_source"] for r in ok} == {energy_source}  # edge and cloud meter on this machine
    assert all(r["energy_j"] >= 0 and r["ttft_ms"] is not None for r in ok)
    assert all(r["queue_ms"] is not None for r in ok if r["tier"] == "edge")  # the in-process worker queue


def test_content_is_stored_only_when_enabled(make_gateway, tmp_path, photo_data_url):
    db = tmp_path / "content.db"
    with make_gateway(None, log={"enabled": True, "path": str(db), "log_content": True}) as gw:
        httpx.post(gw.url + "/infer", json={"text": "what is this?", "image": photo_data_url, "max_tokens": 1},
                   timeout=60)
    (row,) = rows(db)
    assert "what is this?" in row["content"] and len(row["content"]) < 1000  # text + image file name, no bytes
    import json

    from vlrouter.telemetry.decision_log import images_dir

    (name,) = json.loads(row["content"])["messages"][0]["images"]
    stored = images_dir(db) / name
    assert stored.is_file() and name.endswith(".jpg")
    import base64
    import hashlib

    assert stored.read_bytes() == base64.b64decode(photo_data_url.split(",", 1)[1])
    assert name == hashlib.sha256(stored.read_bytes()).hexdigest() + ".jpg"
