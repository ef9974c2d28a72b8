"""SIGTERM: stop accepting, let an in-flight stream finish, exit 0."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import httpx

from tests.conftest import start_server


def refuses_connections(port: int, timeout_s: float) -> bool:
    """Whether new connections to ``port`` go unserved within ``timeout_s`` (polled every 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        except (httpx.ConnectError, httpx.RemoteProtocolError):
            # refused, or (connected in the instant before the listening socket closed) closed unanswered
            return True
        time.sleep(0.05)
    return False


def test_sigterm_drains_streams_and_exits_0(tmp_path, tiny_vlm):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
server: {{graceful_shutdown_s: 30}}
log: {{enabled: true, path: "{tmp_path / 'decisions.db'}"}}
backends: {{edge: {{kind: local, tier: edge, model_path: "{tiny_vlm}", threads: 1}}}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLROUTER_")}
    proc, port = start_server([sys.executable, "-m", "vlrouter", "serve", "--config", str(cfg), "--log-level",
                               "warning"], tmp_path / "serve.log", env=env, timeout_s=120)
    try:
        lines: list[str] = []
        started = threading.Event()

        def stream():
            body = {"model": "edge", "stream": True, "max_tokens": 1500,
                    "messages": [{"role": "user", "content": "Write a very long story."}]}
            with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if line:
                        lines.append(line)
                        started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(30)
        proc.send_signal(signal.SIGTERM)
        assert refuses_connections(port, timeout_s=10)  # no longer accepting, while the stream drains
        assert reader.is_alive()
        reader.join(timeout=60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert lines[-1] == "data: [DONE]"
    finish = [json.loads(x[6:])["choices"][0].get("finish_reason") for x in lines[:-1] if json.loads(x[6:])["choices"]]
    assert finish[-1] in ("stop", "length")
    assert len(lines) > 10  # the stream ran on after SIGTERM instead of being cut
    import sqlite3

    (status, tokens), = sqlite3.connect(tmp_path / "decisions.db").execute(
        "SELECT status, completion_tokens FROM decisions").fetchall()
    assert status == 200 and tokens > 0  # the drained stream's row was flushed before exit
