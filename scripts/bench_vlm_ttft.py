#!/usr/bin/env python
"""Time to first token and end-to-end time of a local VLM served by `vlrouter serve-model`.

Starts `serve-model` on the model folder (default models/demo-vlm) on a loopback port, sends
``--n`` streamed text questions after one warm-up and prints the p50 TTFT and e2e, so routing costs
can be read against the model's own (README, "Gateway overhead").

    python scripts/bench_vlm_ttft.py                     # demo VLM, 2 threads, 7 questions, 32 tokens
    python scripts/bench_vlm_ttft.py --model models/smolvlm-256m --max-tokens 64 --json ttft.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(url: str, n: int, max_tokens: int) -> dict:
    import httpx

    ttft, e2e = [], []
    for i in range(n + 1):
        body = {"model": "bench", "stream": True, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"What is the capital of France? ({i})"}]}
        started, first = time.perf_counter(), None
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if first is None and line.startswith("data: {") and json.loads(line[6:]).get("choices") and \
                        json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    first = time.perf_counter()
        if i and first is not None:  # the first question warms the model up
            ttft.append((first - started) * 1000)
            e2e.append((time.perf_counter() - started) * 1000)
    return {"n": len(ttft), "ttft_p50_ms": round(statistics.median(ttft), 1),
            "e2e_p50_ms": round(statistics.median(e2e), 1), "max_tokens": max_tokens}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/demo-vlm"), help="local model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=7, help="measured questions (after one warm-up)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    from vlrouter.cli.supervise import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vlrouter", "serve-model", "--model", str(args.model),
                             "--name", "bench", "--port", str(port), "--threads", str(args.threads),
                             "--log-level", "warning"])
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        report = {"model": str(args.model), "threads": args.threads,
                  **measure(f"http://127.0.0.1:{port}", args.n, args.max_tokens)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{report['model']}: TTFT p50 {report['ttft_p50_ms']} ms, e2e p50 {report['e2e_p50_ms']} ms "
          f"({report['n']} text questions, {args.max_tokens} tokens max, {args.threads} threads)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
