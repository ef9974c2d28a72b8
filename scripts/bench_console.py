#!/usr/bin/env python
"""Benchmark what one console figure costs on a big decision log: read, cap and aggregate.

Writes a temp SQLite decision log of ``--rows`` synthetic answered requests (through ``DecisionLog``,
spread evenly over ``--span-h`` hours, both tiers, three scenarios), then times what the console's
endpoints do for each window (``LogSource.window``: ``read_rows`` in a thread, capped at
``console.max_rows``; then ``ui.data.live`` / ``savings``; and the Decisions panel's read of its
latest 100 rows), uncached.
Prints rows read, rows kept, and milliseconds per step (median of ``--repeat`` runs).
Usage: scripts/bench_console.py [--rows 200000] [--span-h 24] [--max-rows 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from vlrouter.telemetry.decision_log import DecisionLog
from vlrouter.telemetry.record import DecisionRecord
from vlrouter.ui import data
from vlrouter.ui.source import LogSource

PRICES = data.CloudPrices(0.8, 2.2, 2.5, 10.0, 0.15)


def write_log(path: Path, rows: int, span_s: float, now: float) -> None:
    rng = random.Random(0)
    log = DecisionLog(path)
    for i in range(rows):
        tier = "edge" if rng.random() < 0.6 else "cloud"
        log.record(DecisionRecord(
            request_id=f"req-{i:08d}", ts=now - span_s + span_s * i / rows, endpoint="chat",
            model_requested="vlrouter-auto", scenario_name=rng.choice(["fast", "quality", "energy"]),
            policy="mlp", decided_tier=tier, tier=tier, backend=tier, threshold=0.0,
            scores={"margin": rng.uniform(-1, 1), "p_cloud": rng.random()}, status=200,
            e2e_ms=rng.uniform(20, 900), ttft_ms=rng.uniform(10, 300), tpot_ms=rng.uniform(5, 30),
            prompt_tokens=rng.randint(10, 800), completion_tokens=rng.randint(1, 256),
            energy_j=rng.uniform(0.1, 40), energy_source="estimate"))
    log.close()


async def measure(path: Path, window_s: float, now: float, max_rows: int) -> dict[str, float]:
    source = LogSource(path, max_rows)
    t0 = time.perf_counter()
    win = await source.window(window_s, now=now)  # `now` given: never served from the cache
    t1 = time.perf_counter()
    data.live(win.rows, now=now, window_s=window_s)
    t2 = time.perf_counter()
    data.savings(win.rows, PRICES)
    t3 = time.perf_counter()
    await source.window(window_s, now=now, max_rows=100)  # the Decisions panel: its latest 100 only
    t4 = time.perf_counter()
    return {"kept": len(win.rows), "truncated": win.truncated, "read_ms": (t1 - t0) * 1e3,
            "live_ms": (t2 - t1) * 1e3, "savings_ms": (t3 - t2) * 1e3, "decisions_ms": (t4 - t3) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--span-h", type=float, default=24.0)
    ap.add_argument("--max-rows", type=int, default=50_000, help="console.max_rows")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decisions.db"
        started = time.perf_counter()
        write_log(path, args.rows, args.span_h * 3600, now)
        print(f"wrote {args.rows} rows over {args.span_h:g} h in {time.perf_counter() - started:.1f} s; "
              f"max_rows {args.max_rows}")
        print(f"{'window':>8}{'in window':>11}{'kept':>8}{'read ms':>10}{'live ms':>10}{'savings ms':>12}"
              f"{'decisions ms':>14}")
        for window_s in (900, 3600, 6 * 3600, 24 * 3600):
            runs = [asyncio.run(measure(path, window_s, now, args.max_rows)) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("read_ms", "live_ms", "savings_ms",
                                                                       "decisions_ms")}
            in_window = min(args.rows, round(args.rows * window_s / (args.span_h * 3600)))
            print(f"{window_s / 3600:>7g}h{in_window:>11}{runs[0]['kept']:>8}{med['read_ms']:>10.1f}"
                  f"{med['live_ms']:>10.1f}{med['savings_ms']:>12.1f}{med['decisions_ms']:>14.2f}")


if __name__ == "__main__":
    main()
