"""`vlrouter serve --workers 2`: two processes on one port share /metrics and the decision log."""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ThreadServer, fixed_answer_app, start_server
from vlrouter.telemetry.decision_log import read_rows


def test_two_workers_share_metrics_and_the_log(tmp_path):
    db = tmp_path / "decisions.sqlite"
    with ThreadServer(fixed_answer_app()) as upstream:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(f"""
features: {{enabled: false}}
log: {{enabled: true, path: "{db}"}}
backends:
  edge: {{kind: openai, tier: edge, base_url: "{upstream.url}/v1", model: m-edge}}
  cloud: {{kind: openai, tier: cloud, base_url: "{upstream.url}/v1", model: m-cloud}}
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
        proc, port = start_server([sys.executable, "-m", "vlrouter", "serve", "--config", str(cfg), "--workers", "2"],
                                  tmp_path / "serve.log", env=env, timeout_s=120)
        try:
            url = f"http://127.0.0.1:{port}"
            body = {"model": "vlrouter-auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

            def ask(_):
                with httpx.Client(base_url=url, timeout=30) as client:
                    replies = [client.post("/v1/chat/completions", json=body) for _ in range(10)]
                    # a fresh connection per feedback call: it may land on the other worker
                    fb = httpx.post(f"{url}/v1/feedback", json={"request_id": replies[0].json()["id"], "score": 1})
                    return [r.status_code for r in replies], fb.status_code

            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(ask, range(4)))
            assert all(codes == [200] * 10 and fb == 200 for codes, fb in results)
            metrics = httpx.get(f"{url}/metrics").text
            total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("vlrouter_requests_total{") and 'status="200"' in line)
            assert total == 40  # the same sum whichever worker renders it
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0
    rows = read_rows(db)
    assert len(rows) == 40 and len({r["request_id"] for r in rows}) == 40
    log = (tmp_path / "serve.log").read_text()
    assert log.count("Application startup complete") == 2  # two workers served
