#!/usr/bin/env python
"""Soak the gateway on loopback: a bounded mix of good, bad and streamed requests, client disconnects
and a killed and restarted backend; then check the decision log row by row.

Starts, each as its own process on 127.0.0.1:
  * two fixed-answer OpenAI-compatible backends, edge and cloud (raw ASGI on uvicorn): POST
    /v1/chat/completions answers a fixed chat.completion, or with stream=true `max_tokens` SSE chunks
    (2 ms apart from 256 chunks up: a slow stream), a usage chunk and `data: [DONE]`; GET -> 200
  * vlrouter (`sys.executable -m vlrouter serve`, environment passed through) on a generated config:
    both backends `kind: openai`, features off, complexity-rule routing, the decision log on (temp
    SQLite), server.max_body_bytes 64 KiB, a 1 s circuit-breaker cooldown, log level warning

Then drives `--concurrency` asyncio/httpx clients for `--minutes`, each request with its own
x-request-id, drawn from this mix (weights in KINDS):
  chat_auto, chat_edge, chat_cloud   good chat completions: vlrouter-auto (short and long reasoning
                                     prompts, so both tiers are decided) and forced tiers
  stream_full, stream_long           streams read to the end (32 fast chunks; 300 chunks 2 ms apart)
  stream_disconnect                  a slow stream the client hangs up on after the first chunk
  infer_multipart                    POST /infer multipart with a PNG
  abandoned                          a chat completion the client gives up on (0.15 s timeout) before the
                                     backend answers (0.4 s): no response, but the gateway must log it
  bad_json, bad_base64, unknown_model, bad_scenario, infer_content_type, oversized, oversized_chunked
                                     400 / 404 / 415 / 413 (oversized: Content-Length over the limit;
                                     oversized_chunked: the same body chunked, no Content-Length)
The cloud backend is SIGKILLed at 1/3 of the run and restarted on the same port at 2/3: auto requests
decided for the cloud fall back to the edge (200), forced-cloud ones get 503 until the circuit lets
them through again. Every second the gateway's RSS, open file descriptors and threads are sampled.

At the end the load stops, the gateway gets SIGTERM (it drains and flushes its log) and every row of
the decision log is matched to what the client saw: one row per request that reached the gateway, no
duplicates, the same status and error code (client_disconnected for hang-ups, stream_error for a
stream cut by the kill). Requests that never reached the gateway (refused connections) are counted
apart. Prints requests per kind and status, p50/p99 per kind, RSS/fds at the end of the warm-up vs the
end, and one verdict per aim; exits 0 when every aim holds, else 1.
Aims: no lost, duplicate or mismatched rows; every response as expected (5xx only the 503 of a forced
cloud request during the outage); RSS growth after warm-up <= --rss-growth-mb; fds flat within
--fd-slack. All processes are stopped on exit (errors and Ctrl-C too); traffic only goes to 127.0.0.1.
RSS: the decision log keeps the ids of the last 100,000 requests in memory (for /v1/feedback), so the
gateway's RSS climbs ~200 bytes per request until about 100k requests (+20 MB; +28 MB once that dict
has resized past its cap, ~175k) and is flat after; with the log off it is flat from the start.
Usage: scripts/soak.py --minutes 2 [--concurrency 8] [--warmup S] [--seed N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from vlrouter.cli.supervise import die_with_parent, free_port

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024
SLOW_FROM, SLOW_DELAY_S = 256, 0.002  # backend streams of >= SLOW_FROM chunks pause between chunks
COOLDOWN_S = 1.0  # the circuit breakers' cooldown in the generated config
SHORT = "hi"
LONG = "Explain step by step why the sky is blue, and prove each claim. " + "detail " * 200  # -> cloud

# kind: (weight, expected status, expected error code in the body and the row)
KINDS: dict[str, tuple[int, int, str | None]] = {
    "chat_auto": (6, 200, None), "chat_edge": (3, 200, None), "chat_cloud": (3, 200, None),
    "stream_full": (3, 200, None), "stream_long": (1, 200, None), "stream_disconnect": (2, 200, "client_disconnected"),
    "infer_multipart": (2, 200, None), "abandoned": (1, 0, None),
    "bad_json": (1, 400, "invalid_json"), "bad_base64": (1, 400, "invalid_base64"),
    "unknown_model": (1, 404, "model_not_found"), "bad_scenario": (1, 400, "invalid_scenario"),
    "infer_content_type": (1, 415, "unsupported_media_type"), "oversized": (1, 413, "request_too_large"),
    "oversized_chunked": (1, 413, "request_too_large"),
}
GOOD = ("chat_auto", "chat_edge", "chat_cloud", "infer_multipart")  # non-streamed, answered
ABANDON_TIMEOUT_S, ABANDON_DELAY_MS = 0.15, 400  # the client gives up before the backend answers
OUTAGE_OK = {"chat_cloud": (503, "backend_unavailable")}  # forced cloud while the cloud is down


# --- the fixed-answer backend (runs in a child: `soak.py _backend PORT`) -------------------------------

def backend_app():
    """Raw ASGI: a fixed completion, or ``max_tokens`` SSE chunks (slow from SLOW_FROM up)."""
    def sse(obj) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    head = {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 0, "model": "soak"}
    token = sse({**head, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
    last = sse({**head, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": "stop"}]})
    completion = json.dumps({
        "id": "chatcmpl-soak", "object": "chat.completion", "created": 0, "model": "soak",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}).encode()
    models = b'{"object":"list","data":[{"id":"soak","object":"model","owned_by":"soak"}]}'
    sleep_ms = re.compile(rb"\[sleep (\d+)ms\]").search

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body, more = body + msg.get("body", b""), msg.get("more_body", False)
        try:
            req = json.loads(body) if scope["method"] == "POST" else {}
        except ValueError:
            req = {}
        if m := sleep_ms(body):  # a slow answer (the client gives up on it)
            await asyncio.sleep(int(m.group(1)) / 1000)
        if req.get("stream"):
            n = max(1, min(int(req.get("max_tokens") or 16), 4096))
            gone = asyncio.Event()

            async def watch():
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()
            watcher = asyncio.ensure_future(watch())
            try:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/event-stream")]})
                for i in range(n):
                    if gone.is_set():
                        return
                    await send({"type": "http.response.body", "body": last if i == n - 1 else token,
                                "more_body": True})
                    if n >= SLOW_FROM:
                        await asyncio.sleep(SLOW_DELAY_S)
                usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}
                await send({"type": "http.response.body",
                            "body": sse({**head, "choices": [], "usage": usage}) + b"data: [DONE]\n\n"})
            except OSError:  # the gateway hung up
                return
            finally:
                watcher.cancel()
            return
        payload = models if scope["method"] == "GET" else completion
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
    return app


def serve_backend(port: int) -> None:
    import uvicorn

    uvicorn.run(backend_app(), host=HOST, port=port, log_level="warning", access_log=False, lifespan="off")


# --- processes ----------------------------------------------------------------------------------------

class Procs:
    """Children in their own sessions (Ctrl-C reaches only us), logging to files; all stopped on exit."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs, self.cmds = tmp, {}, {}

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                start_new_session=True, preexec_fn=die_with_parent)
        self.procs[name], self.cmds[name] = (proc, log), cmd
        return proc

    def log_tail(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def pid(self, name: str) -> int:
        return self.procs[name][0].pid

    def kill(self, name: str) -> None:
        """SIGKILL, no goodbye (the whole group)."""
        proc, log = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()

    def terminate(self, name: str, wait_s: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``wait_s``; the exit code (None when it had to be killed)."""
        proc, log = self.procs.pop(name)
        code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        return code

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.terminate(name, wait_s=5)


def wait_ready(procs: Procs, name: str, url: str, timeout_s: float = 120) -> None:
    import urllib.request

    proc = procs.procs[name][0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not get ready at {url} (exit {proc.poll()}); its log ends:\n"
                       f"{procs.log_tail(name)}")


def gateway_config(edge_url: str, cloud_url: str, db: Path) -> dict:
    def backend(tier: str, url: str) -> dict:
        return {"kind": "openai", "tier": tier, "base_url": url, "model": f"soak-{tier}", "max_retries": 1,
                "backoff_s": 0.05, "timeouts": {"connect_s": 1, "first_token_s": 10, "total_s": 30},
                "circuit": {"failures": 3, "cooldown_s": COOLDOWN_S}}
    return {"server": {"log_level": "warning", "graceful_shutdown_s": 10, "max_body_bytes": MAX_BODY},
            "features": {"enabled": False}, "routing": {"policy": "complexity-rule"},
            "log": {"enabled": True, "path": str(db)},
            "backends": {"edge": backend("edge", edge_url), "cloud": backend("cloud", cloud_url)}}


# --- requests -----------------------------------------------------------------------------------------

@dataclass
class Sent:
    """One request as the client saw it."""

    rid: str
    kind: str
    start: float  # seconds since the load started
    end: float = 0.0
    status: int | None = None  # None: no HTTP response
    code: str | None = None  # the error code in the body (or in-band in a stream), or client_disconnected
    backend: str | None = None  # x-vlrouter-backend
    fallback_from: str | None = None
    error: str | None = None  # a transport error
    reached: bool = True  # False: the gateway never got it (the connection was refused)


def png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _code(body: bytes) -> str | None:
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _chat(model: str, text: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, **extra}


async def _chunked(data: bytes):
    for i in range(0, len(data), 16384):
        yield data[i:i + 16384]


async def send_one(client, kind: str, s: Sent, n: int, png: bytes) -> None:
    """Send request ``n`` of ``kind`` and fill in ``s`` with what came back."""
    headers = {"x-request-id": s.rid}
    chat = "/v1/chat/completions"
    text = LONG if n % 2 else SHORT

    def took(resp, body: bytes = b"") -> None:
        s.status, s.backend = resp.status_code, resp.headers.get("x-vlrouter-backend")
        s.fallback_from = resp.headers.get("x-vlrouter-fallback-from")
        if resp.status_code >= 400:
            s.code = _code(body)

    if kind in ("stream_full", "stream_long", "stream_disconnect"):
        body = {"stream_full": _chat("vlrouter-auto", text, max_tokens=32, stream=True),
                "stream_long": _chat("vlrouter-auto", text, max_tokens=300, stream=True),
                "stream_disconnect": _chat("edge" if n % 2 else "vlrouter-auto", text, max_tokens=2000,
                                           stream=True)}[kind]
        async with client.stream("POST", chat, json=body, headers=headers) as resp:
            if resp.status_code != 200 or kind != "stream_disconnect":
                data = await resp.aread()
                took(resp, data)
                if resp.status_code == 200:
                    if b'"error"' in data:
                        s.code = "stream_error"
                    elif not data.rstrip().endswith(b"data: [DONE]"):
                        s.code = "stream_truncated"
                return
            async for _ in resp.aiter_raw():  # the first chunk, then hang up (closes the connection)
                break
            took(resp)
            s.code = "client_disconnected"
        return
    if kind == "abandoned":
        resp = await client.post(chat, json=_chat("edge", f"{text} [sleep {ABANDON_DELAY_MS}ms]"), headers=headers,
                                 timeout=ABANDON_TIMEOUT_S)
    elif kind in ("chat_auto", "chat_edge", "chat_cloud"):
        model = {"chat_auto": "vlrouter-auto", "chat_edge": "edge", "chat_cloud": "cloud"}[kind]
        resp = await client.post(chat, json=_chat(model, text), headers=headers)
    elif kind == "infer_multipart":
        resp = await client.post("/infer", data={"text": text, "max_tokens": "8"},
                                 files={"image": ("red.png", png, "image/png")}, headers=headers)
    elif kind == "bad_json":
        resp = await client.post(chat, content=b'{"model": "vlrouter-auto", "messages": [',
                                 headers={**headers, "content-type": "application/json"})
    elif kind == "bad_base64":
        if n % 2:
            resp = await client.post("/infer", json={"text": "what is it?", "image": "@@@not-base64"}, headers=headers)
        else:
            image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not-base64"}}
            resp = await client.post(chat, json={"model": "vlrouter-auto", "max_tokens": 8, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]}, headers=headers)
    elif kind == "unknown_model":
        resp = await client.post(chat, json=_chat("no-such-model", SHORT), headers=headers)
    elif kind == "bad_scenario":
        resp = await client.post(chat, json=_chat("vlrouter-auto", SHORT, scenario="warp-speed"), headers=headers)
    elif kind == "infer_content_type":
        resp = await client.post("/infer", content=b"text=hi", headers={**headers, "content-type": "text/plain"})
    elif kind in ("oversized", "oversized_chunked"):
        data = json.dumps(_chat("vlrouter-auto", "x" * (MAX_BODY + 16384))).encode()
        content = data if kind == "oversized" else _chunked(data)
        resp = await client.post(chat, content=content, headers={**headers, "content-type": "application/json"})
    else:
        raise ValueError(kind)
    took(resp, resp.content)


# --- the run ------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def median(values: list[float]) -> float | None:
    return pct(values, 0.5)


class Soak:
    def __init__(self, args, procs: Procs, tmp: Path):
        self.args, self.procs, self.tmp = args, procs, tmp
        self.duration = args.minutes * 60
        self.warmup = args.warmup if args.warmup is not None else min(30.0, 0.2 * self.duration)
        self.sent: list[Sent] = []
        self.samples: list[dict] = []
        self.events: dict[str, float | None] = {"cloud_killed": None, "cloud_restarted": None,
                                                "cloud_ready": None, "cloud_recovered": None}
        self.t0 = 0.0
        self.run_id = f"{os.getpid():x}{random.getrandbits(24):06x}"

    def now(self) -> float:
        return time.monotonic() - self.t0

    # processes
    def start(self) -> None:
        me = str(Path(__file__).resolve())
        self.ports = {"edge": free_port(), "cloud": free_port(), "gateway": free_port()}
        for tier in ("edge", "cloud"):
            self.procs.spawn(tier, [sys.executable, me, "_backend", str(self.ports[tier])])
        for tier in ("edge", "cloud"):
            wait_ready(self.procs, tier, f"http://{HOST}:{self.ports[tier]}/v1/models")
        self.db = self.tmp / "decisions.db"
        config = gateway_config(f"http://{HOST}:{self.ports['edge']}/v1", f"http://{HOST}:{self.ports['cloud']}/v1",
                                self.db)
        (self.tmp / "gateway.yaml").write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.procs.spawn("gateway", [sys.executable, "-m", "vlrouter", "serve", "--config",
                                     str(self.tmp / "gateway.yaml"), "--host", HOST,
                                     "--port", str(self.ports["gateway"])])
        wait_ready(self.procs, "gateway", f"http://{HOST}:{self.ports['gateway']}/readyz")
        import psutil

        self.gw_proc = psutil.Process(self.procs.pid("gateway"))

    def sample(self, phase: str) -> dict:
        import psutil

        try:
            with self.gw_proc.oneshot():
                row = {"t": round(self.now(), 2), "phase": phase,
                       "rss_mb": round(self.gw_proc.memory_info().rss / 2**20, 2), "fds": self.gw_proc.num_fds(),
                       "threads": self.gw_proc.num_threads(),
                       "connections": len(self.gw_proc.net_connections(kind="tcp"))}
        except psutil.Error as exc:
            row = {"t": round(self.now(), 2), "phase": phase, "error": repr(exc)}
        row["done"] = sum(1 for s in self.sent if s.end)
        self.samples.append(row)
        return row

    async def sampler(self, until: float) -> None:
        while self.now() < until:
            self.sample("warmup" if self.now() < self.warmup else "load")
            await asyncio.sleep(1.0)

    async def outage(self, client) -> None:
        """Kill the cloud backend at 1/3 of the run, restart it at 2/3 and wait until it answers again."""
        await asyncio.sleep(max(0.0, self.duration / 3 - self.now()))
        self.procs.kill("cloud")
        self.events["cloud_killed"] = round(self.now(), 3)
        await asyncio.sleep(max(0.0, 2 * self.duration / 3 - self.now()))
        me = str(Path(__file__).resolve())
        self.procs.spawn("cloud", [sys.executable, me, "_backend", str(self.ports["cloud"])])  # the same port
        self.events["cloud_restarted"] = round(self.now(), 3)
        url = f"http://{HOST}:{self.ports['cloud']}/v1/models"
        while self.now() < self.duration + 30:
            if self.procs.procs["cloud"][0].poll() is not None:
                raise RuntimeError(f"the restarted cloud backend exited:\n{self.procs.log_tail('cloud')}")
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    self.events["cloud_ready"] = round(self.now(), 3)
                    return
            except Exception:  # not listening yet
                await asyncio.sleep(0.1)

    async def worker(self, client, wid: int, rng: random.Random, until: float, png: bytes) -> None:
        import httpx

        kinds, weights = list(KINDS), [w for w, _, _ in KINDS.values()]
        n = 0
        while self.now() < until and (not self.args.max_requests or len(self.sent) < self.args.max_requests):
            kind = rng.choices(kinds, weights)[0]
            n += 1
            s = Sent(rid=f"soak-{self.run_id}-{wid}-{n}-{kind}", kind=kind, start=self.now())
            self.sent.append(s)
            try:
                await send_one(client, kind, s, n, png)
            except httpx.ConnectError as exc:
                s.error, s.reached = f"{type(exc).__name__}: {exc}", False
            except httpx.HTTPError as exc:
                s.error = f"{type(exc).__name__}: {exc}"
            s.end = self.now()
            if (s.kind == "chat_cloud" and s.status == 200 and self.events["cloud_ready"] is not None
                    and self.events["cloud_recovered"] is None):
                self.events["cloud_recovered"] = round(s.end, 3)

    async def load(self) -> None:
        import httpx

        rng = random.Random(self.args.seed)
        png = png_bytes()
        c = self.args.concurrency
        limits = httpx.Limits(max_connections=c + 4, max_keepalive_connections=c)
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{self.ports['gateway']}", timeout=30,
                                     limits=limits, trust_env=False) as client, \
                httpx.AsyncClient(timeout=2, trust_env=False) as probe:
            self.t0 = time.monotonic()
            until = self.duration
            tasks = [asyncio.ensure_future(self.worker(client, i, random.Random(rng.random()), until, png))
                     for i in range(self.args.concurrency)]
            sampler = asyncio.ensure_future(self.sampler(until))
            outage = asyncio.ensure_future(self.outage(probe))
            gathered = asyncio.gather(*tasks, outage)
            gathered.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, even on Ctrl-C
            try:
                await asyncio.wait_for(gathered, timeout=self.duration + 90)
            finally:
                for t in (*tasks, sampler, outage):
                    t.cancel()
                await asyncio.gather(*tasks, sampler, outage, return_exceptions=True)
            self.sample("end")  # the last sample under load
        await asyncio.sleep(2.0)
        self.sample("idle")  # after the load, connections closed

    def stop_gateway(self) -> int | None:
        """SIGTERM: the gateway drains in-flight requests and flushes its decision log."""
        started = time.monotonic()
        code = self.procs.terminate("gateway", wait_s=40)
        self.shutdown_s = round(time.monotonic() - started, 2)
        return code


# --- checks and report --------------------------------------------------------------------------------

def outage_window(events: dict) -> tuple[float, float] | None:
    """From the kill until the cloud answered again (or, failing that, its readiness plus the cooldown)."""
    if events["cloud_killed"] is None:
        return None
    end = events["cloud_recovered"] or ((events["cloud_ready"] or float("inf")) + COOLDOWN_S + 2)
    return events["cloud_killed"], end


def expected(s: Sent, window: tuple[float, float] | None) -> bool:
    """Whether the client's outcome is what this kind should get."""
    _, status, code = KINDS[s.kind]
    if s.kind == "abandoned":
        return s.status is None and s.error is not None and "Timeout" in s.error
    if s.status == status and s.code == code:
        return True
    during = window is not None and s.end >= window[0] and s.start <= window[1]
    if during and (s.status, s.code) == OUTAGE_OK.get(s.kind):
        return True
    # a stream on the cloud when it was killed: cut in-band after the headers
    return bool(during and s.kind in ("stream_full", "stream_long") and s.status == 200 and s.code == "stream_error")


def check_rows(sent: list[Sent], rows: list[dict]) -> dict:
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["request_id"], []).append(r)
    ours = {s.rid for s in sent}
    lost, duplicates, mismatched, unexpected_row, no_response = [], [], [], [], []
    abandoned_rows: dict[str, int] = {}  # "status/error_code" of the rows of abandoned requests
    for s in sent:
        got = by_id.get(s.rid, [])
        if len(got) > 1:
            duplicates.append({"request_id": s.rid, "kind": s.kind, "rows": len(got)})
        if not s.reached:
            if got:
                unexpected_row.append({"request_id": s.rid, "kind": s.kind, "error": s.error})
            continue
        if s.kind == "abandoned":  # the gateway got it: one row, whatever it says
            if not got:
                lost.append({"request_id": s.rid, "kind": s.kind, "status": s.status, "error": s.error})
            else:
                key = f"{got[0]['status']}/{got[0]['error_code']}"
                abandoned_rows[key] = abandoned_rows.get(key, 0) + 1
            continue
        if s.status is None:  # sent, but no HTTP response: a row may or may not exist
            no_response.append({"request_id": s.rid, "kind": s.kind, "error": s.error, "rows": len(got)})
            continue
        if not got:
            lost.append({"request_id": s.rid, "kind": s.kind, "status": s.status, "code": s.code})
            continue
        row = got[0]
        want_code = s.code if s.code != "stream_truncated" else None
        if row["status"] != s.status or row["error_code"] != want_code:
            mismatched.append({"request_id": s.rid, "kind": s.kind, "client": [s.status, s.code],
                               "row": [row["status"], row["error_code"]]})
    unknown = [r["request_id"] for r in rows if r["request_id"] not in ours]
    codes: dict[str, int] = {}
    for r in rows:
        codes[str(r["error_code"])] = codes.get(str(r["error_code"]), 0) + 1
    return {"rows": len(rows), "requests_reaching_gateway": sum(1 for s in sent if s.reached),
            "not_received": sum(1 for s in sent if not s.reached), "lost": lost, "duplicates": duplicates,
            "mismatched": mismatched, "rows_for_refused": unexpected_row, "no_response": no_response,
            "unknown_rows": unknown, "error_codes": codes, "abandoned_rows": abandoned_rows,
            "fallback_rows": sum(1 for r in rows if r.get("fallback_from")),
            "fallback_rows_cloud_to_edge": sum(1 for r in rows if r.get("fallback_from") == "cloud"
                                               and r.get("backend") == "edge")}


def series_summary(samples: list[dict], warmup: float, key: str) -> dict:
    load = [x for x in samples if key in x and x["phase"] in ("load", "end")]
    warm = [x[key] for x in samples if key in x and x["phase"] in ("warmup", "load") and x["t"] <= warmup + 2.5]
    warm = warm[-5:]  # the last seconds of the warm-up
    tail = [x[key] for x in load][-5:]
    idle = [x[key] for x in samples if key in x and x["phase"] == "idle"]
    values = [x[key] for x in samples if key in x]
    out = {"warmup_end": median(warm), "end": median(tail), "max": max(values) if values else None,
           "idle_after": idle[-1] if idle else None}
    if out["warmup_end"] is not None and out["end"] is not None:
        out["growth"] = round(out["end"] - out["warmup_end"], 2)
    else:
        out["growth"] = None
    pts = [(x["t"], x[key]) for x in load if x["t"] >= warmup]
    if len(pts) >= 3:  # least-squares slope per minute
        mt, mv = sum(t for t, _ in pts) / len(pts), sum(v for _, v in pts) / len(pts)
        den = sum((t - mt) ** 2 for t, _ in pts)
        out["slope_per_min"] = round(60 * sum((t - mt) * (v - mv) for t, v in pts) / den, 3) if den else None
    return out


def build_report(soak: Soak, rows: list[dict], gateway_exit: int | None) -> dict:
    args, sent = soak.args, soak.sent
    window = outage_window(soak.events)
    kinds = {}
    for kind in KINDS:
        mine = [s for s in sent if s.kind == kind]
        statuses: dict[str, int] = {}
        for s in mine:
            key = str(s.status) if s.status is not None else (s.error or "?").split(":")[0]
            if s.code and s.status == 200:
                key += f"/{s.code}"
            statuses[key] = statuses.get(key, 0) + 1
        lats = [(s.end - s.start) * 1000 for s in mine if s.status is not None or kind == "abandoned"]
        kinds[kind] = {"sent": len(mine), "statuses": dict(sorted(statuses.items())),
                       "p50_ms": pct(lats, 0.5), "p99_ms": pct(lats, 0.99),
                       "unexpected": sum(1 for s in mine if not expected(s, window))}
    unexpected = [asdict(s) for s in sent if not expected(s, window)]
    good_lats = [(s.end - s.start) * 1000 for s in sent if s.kind in GOOD and s.status == 200]
    by_outcome: dict[str, int] = {}
    for s in sent:
        if not expected(s, window):
            key = f"{s.kind} {s.status if s.status is not None else s.error} {s.code}"
            by_outcome[key] = by_outcome.get(key, 0) + 1
    rc = check_rows(sent, rows)
    rss = series_summary(soak.samples, soak.warmup, "rss_mb")
    fds = series_summary(soak.samples, soak.warmup, "fds")
    threads = series_summary(soak.samples, soak.warmup, "threads")
    five = [s for s in sent if s.status is not None and s.status >= 500]
    verdicts = [
        {"aim": "no lost log rows", "ok": not (rc["lost"] or rc["duplicates"] or rc["mismatched"]
                                               or rc["rows_for_refused"] or rc["unknown_rows"]),
         "detail": f"lost {len(rc['lost'])}, duplicate {len(rc['duplicates'])}, mismatched {len(rc['mismatched'])}, "
                   f"unknown {len(rc['unknown_rows'])}, rows for refused {len(rc['rows_for_refused'])}"},
        {"aim": "every response as expected", "ok": not unexpected and not rc["no_response"] and gateway_exit == 0,
         "detail": f"{len(unexpected)} unexpected"
                   + (" (" + ", ".join(f"{k} x{n}" for k, n in sorted(by_outcome.items())) + ")" if by_outcome else "")
                   + f", {len(rc['no_response'])} without a response, "
                   f"{len(five)} 5xx (allowed: 503 for forced cloud during the outage), gateway exit {gateway_exit}"},
        {"aim": f"RSS growth after warm-up <= {args.rss_growth_mb:g} MiB",
         "ok": rss["growth"] is not None and rss["growth"] <= args.rss_growth_mb,
         "detail": f"{rss['warmup_end']} -> {rss['end']} MiB ({rss['growth']:+} MiB)" if rss["growth"] is not None
                   else "no samples"},
        {"aim": f"open fds flat after warm-up (within +-{args.fd_slack})",
         "ok": fds["growth"] is not None and abs(fds["growth"]) <= args.fd_slack,
         "detail": f"{fds['warmup_end']} -> {fds['end']} ({fds['growth']:+})" if fds["growth"] is not None
                   else "no samples"},
    ]
    return {
        "args": {"minutes": args.minutes, "concurrency": args.concurrency, "seed": args.seed,
                 "warmup_s": soak.warmup, "max_requests": args.max_requests},
        "elapsed_s": round(max((s.end for s in sent), default=0.0), 2), "events": soak.events,
        "outage_window": window, "requests": len(sent),
        "rps": round(len(sent) / soak.duration, 1) if soak.duration else None,
        "kinds": kinds, "good_p50_ms": pct(good_lats, 0.5), "good_p99_ms": pct(good_lats, 0.99),
        "five_xx": dict(sorted(Counter(f"{s.kind} {s.status}" for s in five).items())),
        "rows": rc, "unexpected_by_outcome": by_outcome, "unexpected": unexpected[:200],
        "rss_mb": rss, "fds": fds, "threads": threads,
        "gateway_exit": gateway_exit, "gateway_shutdown_s": getattr(soak, "shutdown_s", None),
        "verdicts": verdicts, "ok": all(v["ok"] for v in verdicts), "samples": soak.samples,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }


def print_report(r: dict) -> None:
    num = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    a, e = r["args"], r["events"]
    print(f"\nsoak: {a['minutes']:g} min, concurrency {a['concurrency']}, warm-up {a['warmup_s']:g} s, "
          f"{r['requests']} requests ({r['rps']} req/s)")
    print(f"cloud backend: SIGKILL at {num(e['cloud_killed'])} s, restarted at {num(e['cloud_restarted'])} s "
          f"(ready {num(e['cloud_ready'])} s), first forced-cloud 200 after it at {num(e['cloud_recovered'])} s")
    print(f"\n{'kind':<20}{'sent':>7}{'p50 ms':>9}{'p99 ms':>9}{'unexp':>7}  statuses")
    for kind, k in r["kinds"].items():
        st = " ".join(f"{s}:{n}" for s, n in k["statuses"].items())
        print(f"{kind:<20}{k['sent']:>7}{num(k['p50_ms']):>9}{num(k['p99_ms']):>9}{k['unexpected']:>7}  {st}")
    print(f"answered non-streamed requests ({', '.join(GOOD)}): p50 {num(r['good_p50_ms'])} ms, "
          f"p99 {num(r['good_p99_ms'])} ms")
    rows = r["rows"]
    print(f"\ndecision log: {rows['rows']} rows for {rows['requests_reaching_gateway']} requests that reached the "
          f"gateway ({rows['not_received']} never reached it); lost rows: {len(rows['lost'])}, duplicates "
          f"{len(rows['duplicates'])}, mismatched {len(rows['mismatched'])}, unknown {len(rows['unknown_rows'])}")
    print(f"  fallbacks logged: {rows['fallback_rows']} (cloud -> edge {rows['fallback_rows_cloud_to_edge']}); "
          f"error codes: " + ", ".join(f"{c} {n}" for c, n in sorted(rows["error_codes"].items())))
    if rows["abandoned_rows"]:
        print("  rows of abandoned requests (status/error_code): "
              + ", ".join(f"{k} {n}" for k, n in sorted(rows["abandoned_rows"].items())))
    for name in ("lost", "duplicates", "mismatched", "no_response", "rows_for_refused"):
        for item in rows[name][:10]:
            print(f"  {name}: {item}")
    if r["five_xx"]:
        print("  5xx: " + ", ".join(f"{k} x{n}" for k, n in r["five_xx"].items()))
    for s in r["unexpected"][:5]:
        print(f"  unexpected: {s['kind']} {s['rid']} status {s['status']} code {s['code']} error {s['error']} "
              f"at {s['start']:.2f}-{s['end']:.2f} s")
    for key, unit in (("rss_mb", "MiB"), ("fds", ""), ("threads", "")):
        m = r[key]
        print(f"gateway {key.split('_')[0]:<8} warm-up end {m['warmup_end']}, end {m['end']}, max {m['max']}, "
              f"idle after {m['idle_after']}, slope {m.get('slope_per_min')} {unit}/min".rstrip())
    print(f"gateway: SIGTERM -> exit {r['gateway_exit']} in {r['gateway_shutdown_s']} s")
    print("\nverdicts:")
    for v in r["verdicts"]:
        print(f"  {'PASS' if v['ok'] else 'FAIL'}  {v['aim']}: {v['detail']}")
    print(f"lost rows: {len(rows['lost'])}" if not rows["lost"] else
          "lost rows: " + ", ".join(x["request_id"] for x in rows["lost"][:50]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, required=True, help="how long the load runs (float, e.g. 0.5)")
    p.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--warmup", type=float, help="seconds not judged for RSS/fds (default 20%% of the run, <= 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the request mix (default 0)")
    p.add_argument("--max-requests", type=int, default=0, help="stop after this many requests (default: no cap)")
    p.add_argument("--rss-growth-mb", type=float, default=30.0, help="RSS growth aim after warm-up (default 30)")
    p.add_argument("--fd-slack", type=int, default=5, help="open-fd aim: end within +-N of warm-up end (default 5)")
    p.add_argument("--json", type=Path, help="write the whole report, time series included, here")
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60:
        p.error("--minutes must be in (0, 1440]")
    if args.concurrency < 1:
        p.error("--concurrency must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "_backend":
        serve_backend(int(argv[1]))
        return 0
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vlrouter-soak-") as tmp:
        procs = Procs(Path(tmp))
        try:
            soak = Soak(args, procs, Path(tmp))
            print("starting backends and the gateway ...", flush=True)
            soak.start()
            print(f"gateway pid {soak.gw_proc.pid} on {HOST}:{soak.ports['gateway']}; load for {soak.duration:g} s",
                  flush=True)
            asyncio.run(soak.load())
            gateway_exit = soak.stop_gateway()
            from vlrouter.telemetry.decision_log import read_rows

            rows = read_rows(soak.db)
            report = build_report(soak, rows, gateway_exit)
            if gateway_exit != 0:
                print(f"gateway log ends:\n{procs.log_tail('gateway')}", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the children
    sys.exit(main())
