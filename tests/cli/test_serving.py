"""`vlrouter serve` as a user runs it: with no cloud URL it starts a labelled local stand-in."""

from __future__ import annotations

import os
import signal
import sys

import httpx
import pytest

from tests.conftest import start_server


def test_serve_starts_cloud_standin(tmp_path, tiny_vlm):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
backends:
  edge: {{kind: local, tier: edge, model_path: "{tiny_vlm}", served_name: tiny-edge, threads: 1}}
  cloud: {{kind: openai, tier: cloud, model: cloud-standin, standin_model: "{tiny_vlm}"}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
    log = tmp_path / "serve.log"
    proc, port = start_server([sys.executable, "-m", "vlrouter", "serve", "--config", str(cfg)], log, env=env)
    try:
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


def test_readme_serve_command_routes_with_the_trained_demo_router(tmp_path):
    """`scripts/serve` (README's main command) on the embedded defaults answers through the mlp router."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
    env["VLROUTER_LOG__PATH"] = str(tmp_path / "decisions.db")  # keep the checkout's data/ untouched
    log = tmp_path / "serve.log"
    proc, port = start_server(["bash", "scripts/serve"], log, env=env, timeout_s=300, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        reply = httpx.post(f"{base}/v1/chat/completions", timeout=120,
                           json={"model": "vlrouter-auto", "max_tokens": 1,
                                 "messages": [{"role": "user", "content": "What is in the picture?"}]})
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-vlrouter-policy"] == "mlp"
        assert reply.headers["x-vlrouter-min-quality"] == "0.98"  # the default scenario, quality
        card = httpx.get(f"{base}/v1/models").json()["data"][0]["router"]
        assert card["checkpoint"] == "models/router-demo" and card["synthetic"] is True
        assert card["floors"] == {"fast": 0.9, "quality": 0.98, "energy": 0.9}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert "router: mlp (" in text and "SYNTHETIC outcomes" in text and "from models/router-demo" in text
