"""`vlrouter serve` as a user runs it: with no cloud URL it starts a labelled local stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT, free_port
from vlrouter.cli import wait_ready


def test_serve_starts_cloud_standin(tmp_path, tiny_vlm):
    port = free_port()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
backends:
  edge: {{kind: local, tier: edge, model_path: "{tiny_vlm}", served_name: tiny-edge, threads: 1}}
  cloud: {{kind: openai, tier: cloud, model: cloud-standin, standin_model: "{tiny_vlm}"}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vlrouter", "serve", "--config", str(cfg), "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout_s=180)
            cards = {m["id"]: m for m in httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]}
            assert cards["cloud-standin"]["standin"] is True
            assert cards["cloud-standin"]["owned_by"] == "vlrouter-standin"
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                               json={"model": "cloud", "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 2})
            assert reply.status_code == 200 and reply.headers["x-vlrouter-tier"] == "cloud"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    text = log.read_text()
    assert "LOCAL STAND-IN" in text
    assert proc.returncode == 0
    standin_port = int(text.split("on 127.0.0.1:")[1].split(".")[0])
    with pytest.raises(httpx.ConnectError):  # the stand-in went down with the gateway
        httpx.get(f"http://127.0.0.1:{standin_port}/healthz")
