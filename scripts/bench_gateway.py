#!/usr/bin/env python
"""Benchmark what the gateway adds per request, against a fixed-answer backend on loopback.

Starts, each as its own process on 127.0.0.1:
  * a fixed-answer OpenAI-compatible backend (raw ASGI on uvicorn with uvloop + httptools,
    pre-encoded bytes): POST /v1/chat/completions answers a fixed chat.completion with usage, or with
    stream=true 256 SSE chunks of one short token each, a usage chunk and `data: [DONE]`; GET -> 200
  * vlrouter (`sys.executable -m vlrouter serve`, so whatever vlrouter this Python imports is measured:
    PYTHONPATH=<other checkout>/src .venv/bin/python scripts/bench_gateway.py benchmarks another tree)
    on a generated config: two `openai` backends (edge, cloud) on the fixed backend, features off,
    complexity-rule routing, decision log on (temp SQLite)
  * optionally the LiteLLM proxy on the same backend (`--litellm PATH`, default .venv-peers/bin/litellm).
    litellm pins its own fastapi/pydantic/httpx, so it lives in a separate venv, never in .venv (it runs
    without a master key, like vlrouter here, via LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY):
        python3.11 -m venv .venv-peers && .venv-peers/bin/pip install 'litellm[proxy]'

Targets (non-streamed body {"model": M, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}):
  direct         the backend itself              litellm   the LiteLLM proxy (when available)
  forced         vlrouter, "model": "edge"       auto      vlrouter, "model": "vlrouter-auto"
  direct-stream, forced-stream: the same with stream=true (256 chunks), time to the last byte.
Each runs at concurrency 1 and 16 after a warm-up, driven by the same load generator: by default our
own (a separate asyncio/uvloop process, raw keep-alive HTTP/1.1, pre-built request bytes), or `hey`
(`--loadgen hey`, Debian package hey; its latencies have 0.1 ms resolution).
Prints req/s, p50/p99 and errors per target, then: added ms at p50 (c=1), req/s ratios at c=16 and
added microseconds per streamed chunk. The default run takes about 2-3 minutes; --quick a few seconds
per target (smoke test). All processes are stopped on exit; traffic only goes to 127.0.0.1.
Usage: scripts/bench_gateway.py [--quick | --duration S --warmup S] [--loadgen ours|hey] [--litellm PATH]
                               [--targets direct,forced,...] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHUNKS = 256
CONCURRENCY = (1, 16)
PEERS_LITELLM = Path(__file__).resolve().parents[1] / ".venv-peers" / "bin" / "litellm"
TARGETS = {  # name: (server, model, stream)
    "direct": ("backend", "bench", False), "litellm": ("litellm", "edge", False),
    "forced": ("vlrouter", "edge", False), "auto": ("vlrouter", "vlrouter-auto", False),
    "direct-stream": ("backend", "bench", True), "forced-stream": ("vlrouter", "edge", True),
}


# --- the fixed-answer backend (runs in a child: `bench_gateway.py _backend PORT`) ---------------------

def backend_app():
    """A raw ASGI app answering every POST with pre-encoded bytes (streamed when the body says so)."""
    def sse(obj) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
    usage = {"prompt_tokens": 8, "completion_tokens": CHUNKS, "total_tokens": 8 + CHUNKS}
    token = sse({**head, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]})
    last = sse({**head, "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": "stop"}]})
    tail = sse({**head, "choices": [], "usage": usage}) + b"data: [DONE]\n\n"
    completion = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}).encode()
    models = b'{"object":"list","data":[{"id":"bench","object":"model","owned_by":"bench"}]}'
    is_stream = re.compile(rb'"stream"\s*:\s*true').search
    sse_start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body, more = body + msg.get("body", b""), msg.get("more_body", False)
        if scope["method"] == "POST" and is_stream(body):
            await send(sse_start)
            for chunk in (token,) * (CHUNKS - 1) + (last,):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": tail})
            return
        payload = models if scope["method"] == "GET" else completion
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
    return app


def serve_backend(port: int) -> None:
    import uvicorn

    uvicorn.run(backend_app(), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")


# --- our load generator (runs in a child: `bench_gateway.py _loadgen SPEC_JSON`) -----------------------

async def read_response(reader: asyncio.StreamReader, buf: bytearray) -> tuple[int, bool]:
    """Read one HTTP/1.1 response (Content-Length or chunked, no trailers) via ``buf``: (status, keep-alive)."""
    async def more() -> None:
        data = await reader.read(262144)
        if not data:
            raise ConnectionError("connection closed")
        buf.extend(data)

    while (end := buf.find(b"\r\n\r\n")) < 0:
        await more()
    head = bytes(buf[:end]).lower()
    del buf[:end + 4]
    status = int(head[9:12])
    if m := re.search(rb"\r\ncontent-length:\s*(\d+)", head):
        pos = int(m.group(1))
        while len(buf) < pos:
            await more()
    elif b"\r\ntransfer-encoding: chunked" in head:
        pos = 0
        while True:
            while (eol := buf.find(b"\r\n", pos)) < 0:
                await more()
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2 + size + 2
            while len(buf) < pos:
                await more()
            if size == 0:
                break
    else:
        raise ValueError("response without length")
    del buf[:pos]
    return status, b"\r\nconnection: close" not in head


async def loadgen(spec: dict) -> dict:
    """Drive ``spec['concurrency']`` keep-alive connections for a warm-up, then the measured window."""
    port, body = spec["port"], spec["body"].encode()
    request = (f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    lats: list[float] = []
    errors = [0]

    async def worker(until: float, record: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        buf = bytearray()
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            try:
                status, keep_alive = await read_response(reader, buf)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                status, keep_alive = 0, False
                await asyncio.sleep(0.01)
            if record:
                lats.append(time.perf_counter() - started) if status else None
                errors[0] += status != 200
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                buf.clear()
        writer.close()

    conc = spec["concurrency"]
    await asyncio.gather(*(worker(time.perf_counter() + spec["warmup_s"], False) for _ in range(conc)))
    started = time.perf_counter()
    await asyncio.gather(*(worker(started + spec["duration_s"], True) for _ in range(conc)))
    elapsed = time.perf_counter() - started
    lats.sort()
    pick = (lambda q: lats[min(len(lats) - 1, round(q * (len(lats) - 1)))] * 1000) if lats else (lambda q: None)
    return {"n": len(lats), "rps": len(lats) / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "errors": errors[0]}


def run_ours(port: int, path: str, body: str, c: int, warmup_s: float, duration_s: float) -> dict:
    spec = {"port": port, "path": path, "body": body, "concurrency": c, "warmup_s": warmup_s,
            "duration_s": duration_s}
    out = subprocess.run([sys.executable, __file__, "_loadgen", json.dumps(spec)], capture_output=True,
                         text=True, timeout=warmup_s + duration_s + 120)
    if out.returncode:
        raise RuntimeError(f"load generator failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def run_hey(hey: str, port: int, path: str, body: str, c: int, warmup_s: float, duration_s: float) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    base = [hey, "-c", str(c), "-m", "POST", "-T", "application/json", "-d", body, "-t", "30"]
    subprocess.run([*base, "-z", f"{warmup_s}s", url], capture_output=True, check=True)
    out = subprocess.run([*base, "-z", f"{duration_s}s", url], capture_output=True, text=True, check=True,
                         timeout=duration_s + 120).stdout

    def grab(pattern: str) -> float | None:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else None
    statuses = {int(s): int(n) for s, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", out.partition("Error distribution:")[2], re.M))
    p50, p99 = grab(r"50%+ in ([\d.]+) secs"), grab(r"99%+ in ([\d.]+) secs")
    return {"n": sum(statuses.values()), "rps": grab(r"Requests/sec:\s+([\d.]+)"),
            "p50_ms": p50 * 1000 if p50 is not None else None, "p99_ms": p99 * 1000 if p99 is not None else None,
            "errors": errors + sum(n for s, n in statuses.items() if s != 200)}


# --- processes ----------------------------------------------------------------------------------------
# Own copies of vlrouter.cli.supervise's free_port / die_with_parent on purpose: the script benchmarks
# whatever vlrouter tree is on PYTHONPATH, older ones included, so it imports nothing from it.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Procs:
    """Children in their own sessions (Ctrl-C reaches only us), each logging to a file; all stopped on exit."""

    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, {}

    def start(self, name: str, cmd: list[str], ready_url: str, env: dict | None = None, timeout_s: float = 120):
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent)
        self.procs[name] = (proc, log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
        self.stop(name)
        raise RuntimeError(f"{name} did not get ready at {ready_url} (exit {proc.poll()}); its log ends:\n{tail}")

    def stop(self, name: str) -> None:
        proc, log = self.procs.pop(name)
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):  # the whole group: workers included
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        log.close()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def vlrouter_config(backend_url: str, tmp: Path) -> dict:
    backend = {"kind": "openai", "base_url": backend_url}
    return {"server": {"log_level": "warning", "graceful_shutdown_s": 2},
            "features": {"enabled": False}, "routing": {"policy": "complexity-rule"},
            "log": {"enabled": True, "path": str(tmp / "decisions.db")},
            "backends": {"edge": {**backend, "tier": "edge", "model": "bench-edge"},
                         "cloud": {**backend, "tier": "cloud", "model": "bench-cloud"}}}


def start_server(procs: Procs, server: str, backend_url: str, litellm: Path | None) -> int:
    """Start vlrouter or LiteLLM on the fixed backend; its port."""
    port, tmp = free_port(), procs.tmp
    if server == "vlrouter":
        (tmp / "vlrouter.yaml").write_text(json.dumps(vlrouter_config(backend_url, tmp)))  # JSON is YAML
        cmd = [sys.executable, "-m", "vlrouter", "serve", "--config", str(tmp / "vlrouter.yaml"), "--port", str(port)]
        procs.start(server, cmd, f"http://127.0.0.1:{port}/readyz")
        return port
    config = {"model_list": [{"model_name": "edge", "litellm_params": {
        "model": "openai/bench", "api_base": backend_url, "api_key": "unused"}}],
        "litellm_settings": {"telemetry": False, "drop_params": True}}
    (tmp / "litellm.yaml").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR",
               LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY="true")  # no auth, like vlrouter here
    cmd = [str(litellm), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1"]
    procs.start(server, cmd, f"http://127.0.0.1:{port}/health/liveliness", env=env, timeout_s=180)
    return port


# --- the run ------------------------------------------------------------------------------------------

def body_for(model: str, stream: bool) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": CHUNKS if stream else 8}
    return json.dumps({**body, "stream": True} if stream else body)


def check(port: int, body: str, stream: bool) -> str:
    """One request before measuring: fail loudly unless it is a 200 with the whole answer."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body.encode(),
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        data, tier = resp.read(), resp.headers.get("x-vlrouter-tier")
    chunks = data.count(b'"tok "')
    if stream and (chunks != CHUNKS or not data.rstrip().endswith(b"data: [DONE]")):
        raise RuntimeError(f"stream check: {chunks} token chunks (want {CHUNKS}); ends {data[-80:]!r}")
    if not stream and b"Paris." not in data:
        raise RuntimeError(f"answer check failed: {data[:300]!r}")
    return f"{len(data)} bytes" + (f", {chunks} chunks" if stream else "") + (f", tier {tier}" if tier else "")


def measure(args, port: int, name: str) -> list[dict]:
    _, model, stream = TARGETS[name]
    body = body_for(model, stream)
    print(f"  {name}: check ok ({check(port, body, stream)})", flush=True)
    rows = []
    for c in CONCURRENCY:
        if args.loadgen == "hey":
            r = run_hey(args.hey, port, "/v1/chat/completions", body, c, args.warmup, args.duration)
        else:
            r = run_ours(port, "/v1/chat/completions", body, c, args.warmup, args.duration)
        rows.append({"target": name, "concurrency": c, **r})
        print("   ", row_line(rows[-1]), flush=True)
    return rows


def row_line(r: dict) -> str:
    num = lambda v, w, d: f"{'-' if v is None else f'{v:.{d}f}':>{w}}"  # noqa: E731
    return (f"{r['target']:<15}{r['concurrency']:>4}{num(r['rps'], 11, 1)}{num(r['p50_ms'], 10, 3)}"
            f"{num(r['p99_ms'], 10, 3)}{r['errors']:>8}")


def derive(rows: list[dict]) -> dict:
    get = {(r["target"], r["concurrency"]): r for r in rows}

    def diff(a: str, b: str, c: int, scale: float = 1.0):
        if get.get((a, c), {}).get("p50_ms") is not None and get.get((b, c), {}).get("p50_ms") is not None:
            return round((get[(a, c)]["p50_ms"] - get[(b, c)]["p50_ms"]) * scale, 3)

    def ratio(a: str, b: str, c: int):
        if (a, c) in get and (b, c) in get and get[(b, c)]["rps"]:
            return round(get[(a, c)]["rps"] / get[(b, c)]["rps"], 3)
    return {"added_ms_p50_c1": {"forced": diff("forced", "direct", 1), "auto": diff("auto", "direct", 1)},
            "rps_ratio_c16": {"forced/litellm": ratio("forced", "litellm", 16),
                              "forced/direct": ratio("forced", "direct", 16)},
            "added_us_per_chunk_p50": {f"c{c}": diff("forced-stream", "direct-stream", c, 1000 / CHUNKS)
                                       for c in CONCURRENCY}}


def print_table(rows: list[dict], derived: dict) -> None:
    print(f"\n{'target':<15}{'c':>4}{'req/s':>11}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for r in sorted(rows, key=lambda r: (list(TARGETS).index(r["target"]), r["concurrency"])):
        print(row_line(r))
    a, q, s = derived["added_ms_p50_c1"], derived["rps_ratio_c16"], derived["added_us_per_chunk_p50"]
    print(f"\nadded ms per request at p50, c=1:   forced {a['forced']}   auto {a['auto']}")
    print(f"req/s ratio at c=16:                forced/litellm {q['forced/litellm']}   "
          f"forced/direct {q['forced/direct']}")
    print(f"added us per streamed chunk (p50):  c=1 {s['c1']}   c=16 {s['c16']}")


def vlrouter_commit() -> dict:
    spec = importlib.util.find_spec("vlrouter")
    where = Path(spec.origin).parent if spec and spec.origin else Path.cwd()
    git = ["git", "-C", str(where)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True, text=True).stdout
    return {"path": str(where), "commit": head or None, "dirty": bool(dirty.strip())}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run: 0.5 s warm-up + 2 s per measurement")
    p.add_argument("--duration", type=float, help="measured seconds per target and concurrency (default 8)")
    p.add_argument("--warmup", type=float, help="warm-up seconds before each measurement (default 2)")
    p.add_argument("--loadgen", choices=["ours", "hey"], default="ours", help="load generator (default ours)")
    p.add_argument("--hey", default=shutil.which("hey"), help="hey binary (default: hey on PATH)")
    p.add_argument("--litellm", type=Path, default=PEERS_LITELLM,
                   help=f"litellm executable for the peer target (default {PEERS_LITELLM})")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    p.add_argument("--json", type=Path, help="write rows, derived figures and machine info here")
    args = p.parse_args()
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    if args.loadgen == "hey" and not args.hey:
        p.error("--loadgen hey: no hey binary found (apt-get install hey, or --hey PATH)")
    args.targets = [t for t in args.targets.split(",") if t]
    if unknown := set(args.targets) - set(TARGETS):
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def run_all(args, procs: Procs) -> list[dict]:
    backend_port = free_port()
    procs.start("backend", [sys.executable, __file__, "_backend", str(backend_port)],
                f"http://127.0.0.1:{backend_port}/v1/models")
    backend_url = f"http://127.0.0.1:{backend_port}/v1"
    if "litellm" in args.targets and not args.litellm.is_file():
        print(f"litellm: not found at {args.litellm}; skipping that target. Install it apart from .venv:\n"
              "  python3.11 -m venv .venv-peers && .venv-peers/bin/pip install 'litellm[proxy]'", flush=True)
        args.targets.remove("litellm")
    rows = []
    for server in ("backend", "litellm", "vlrouter"):
        names = [n for n in args.targets if TARGETS[n][0] == server]
        if not names:
            continue
        print(f"{server}:", flush=True)
        try:
            port = backend_port if server == "backend" else start_server(procs, server, backend_url, args.litellm)
        except RuntimeError as exc:
            if server != "litellm":
                raise
            print(f"litellm: {exc}\nskipping the litellm target", flush=True)  # the peer is optional
            continue
        for name in names:
            rows += measure(args, port, name)
        if server != "backend":
            procs.stop(server)
    return rows


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "_backend":
        serve_backend(int(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "_loadgen":
        try:
            from uvloop import run
        except ImportError:
            run = asyncio.run
        print(json.dumps(run(loadgen(json.loads(sys.argv[2])))))
        return 0
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the children
    with tempfile.TemporaryDirectory(prefix="vlrouter-bench-gw-") as tmp:
        procs = Procs(Path(tmp))
        try:
            rows = run_all(args, procs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            procs.stop_all()
    derived = derive(rows)
    print_table(rows, derived)
    if args.json:
        result = {"rows": rows, "derived": derived, "chunks_per_stream": CHUNKS, "loadgen": args.loadgen,
                  "warmup_s": args.warmup, "duration_s": args.duration, "vlrouter": vlrouter_commit(),
                  "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform()}}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
