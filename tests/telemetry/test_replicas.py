"""Two gateway replicas share one PostgreSQL decision log: one row per request, feedback on either replica."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import ROOT, ThreadServer, fixed_answer_app, start_server
from vlrouter.telemetry.decision_log import read_rows

GOOD = {"model": "vlrouter-auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
CLOUD = {**GOOD, "messages": [{"role": "user", "content": "Explain step by step why " + "detail " * 120}]}
N = 400


def start_replica(cfg: Path, out: Path) -> tuple[subprocess.Popen, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
    return start_server([sys.executable, "-m", "vlrouter", "serve", "--config", str(cfg)], out, env=env,
                        timeout_s=120)


def send(urls: list[str], i: int) -> tuple[str, int, int | None]:
    """Request ``i`` to replica ``i % 2`` (a third of them bad); feedback for a good one to the other replica."""
    rid = f"rep-{i:04d}"
    here, there = urls[i % 2], urls[(i + 1) % 2]
    headers = {"x-request-id": rid}
    with httpx.Client(base_url=here, timeout=60, headers=headers) as client:
        kind = i % 3
        if kind == 0:  # bad: broken JSON, an undecodable image, or an unknown model
            bad = i % 9
            if bad == 0:
                r = client.post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
            elif bad == 3:
                r = client.post("/infer", json={"text": "hi", "image": "@@@"})
            else:
                r = client.post("/v1/chat/completions", json={**GOOD, "model": "no-such-model"})
        else:
            r = client.post("/v1/chat/completions", json=CLOUD if kind == 1 else GOOD)
    feedback = None
    if r.status_code == 200:
        feedback = httpx.post(f"{there}/v1/feedback", json={"request_id": rid, "score": (i % 5) / 4},
                              timeout=60).status_code
    return rid, r.status_code, feedback


def test_two_replicas_one_log_exactly_one_row_per_request(pg_url, tmp_path):
    edge, cloud = ThreadServer(fixed_answer_app()), ThreadServer(fixed_answer_app())
    with edge, cloud:
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(f"""
features: {{enabled: false}}
log: {{enabled: true, url: "{pg_url}"}}
routing: {{default_scenario: quality, fallback: true}}
backends:
  edge: {{kind: openai, tier: edge, base_url: "{edge.url}/v1", model: m-edge}}
  cloud: {{kind: openai, tier: cloud, base_url: "{cloud.url}/v1", model: m-cloud, max_retries: 0,
           timeouts: {{connect_s: 1}}}}
""")
        procs, ports = zip(*(start_replica(cfg, tmp_path / f"replica{k}.log") for k in range(2)), strict=True)
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            with ThreadPoolExecutor(8) as pool:
                first = list(pool.map(lambda i: send(urls, i), range(N // 2)))
                cloud.__exit__(None, None, None)  # the cloud backend dies midway: its requests fall back
                second = list(pool.map(lambda i: send(urls, i), range(N // 2, N)))
            metrics = [httpx.get(u + "/metrics").text for u in urls]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
    assert [p.returncode for p in procs] == [0, 0]
    sent = first + second
    assert sum(status == 200 for _, status, _ in sent) == N - (N + 2) // 3  # every good request answered
    assert all(fb == 200 for _, status, fb in sent if status == 200)  # the other replica knew the id
    assert all('vlrouter_decision_log_dropped_total{reason="buffer_full"} 0.0' in m for m in metrics)

    rows = read_rows(pg_url)
    assert sorted(r["request_id"] for r in rows) == sorted(rid for rid, _, _ in sent)  # exactly one each
    by_id = {r["request_id"]: r for r in rows}
    assert all(by_id[rid]["status"] == status for rid, status, _ in sent)
    assert all(by_id[rid]["feedback_score"] == (int(rid[4:]) % 5) / 4 for rid, status, _ in sent if status == 200)
    late = [by_id[rid] for rid, status, _ in second if status == 200 and int(rid[4:]) % 3 == 1]
    assert late and all(r["tier"] == "edge" and r["fallback_from"] == "cloud" for r in late)
    assert any(by_id[rid]["tier"] == "cloud" for rid, _, _ in first)

    stats = subprocess.run([sys.executable, "-m", "vlrouter", "log", "stats", "--db", pg_url, "--json"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert report["requests"] == N and report["answered"] == N - (N + 2) // 3
    assert report["with_feedback"] == report["answered"] and report["fallbacks"] == len(late)
