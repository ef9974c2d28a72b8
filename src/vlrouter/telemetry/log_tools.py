"""``vlrouter log export`` and ``vlrouter log stats``: the decision log read back."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str | None, *, now: float | None = None) -> float | None:
    """``2026-11-24``, ``2026-11-24T08:00:00+00:00`` (ISO 8601; no zone means local time), a Unix
    timestamp, or a span back from now: ``90s``, ``30m``, ``6h``, ``7d``."""
    if value is None:
        return None
    value = value.strip()
    if m := _RELATIVE.match(value):
        return (now if now is not None else time.time()) - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(f"{value!r}: use an ISO date/time, a Unix timestamp or a span such as 30m, 6h, 7d") from None


def export_rows(rows: list[dict[str, Any]], out: Path | None, fmt: str) -> int:
    """Write rows as JSON lines (to ``out`` or stdout) or Parquet (``out`` required). Returns the count."""
    if fmt == "jsonl":
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if out is None:
            import sys

            sys.stdout.write(lines)
        else:
            out.write_text(lines, encoding="utf-8")
        return len(rows)
    if fmt != "parquet":
        raise ValueError(f"unknown format {fmt!r}")
    if out is None:
        raise ValueError("--format parquet needs --out PATH")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("parquet export needs pyarrow: pip install 'vlrouter[parquet]'") from None
    from vlrouter.telemetry.decision_log import COLUMNS

    kinds = {"TEXT": pa.string(), "REAL": pa.float64(), "INTEGER": pa.int64()}
    fields = [pa.field(name, kinds[kind]) for name, kind in COLUMNS.items()] + [pa.field("feedback_score",
                                                                                          pa.float64())]
    table = {f.name: [_flat(r.get(f.name)) for r in rows] for f in fields}
    pq.write_table(pa.table(table, schema=pa.schema(fields)), out)
    return len(rows)


def _flat(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _group(rows: list[dict[str, Any]]) -> dict[str, Any]:
    e2e = [r["e2e_ms"] for r in rows if r["e2e_ms"] is not None]
    ttft = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
    energy = [r["energy_j"] for r in rows if r["energy_j"] is not None]
    sources = Counter(r["energy_source"] for r in rows if r["energy_source"])
    return {"requests": len(rows), "e2e_ms_p50": _pct(e2e, 50), "e2e_ms_p99": _pct(e2e, 99),
            "ttft_ms_p50": _pct(ttft, 50), "ttft_ms_p99": _pct(ttft, 99),
            "joules_per_request": round(float(np.mean(energy)), 4) if energy else None,
            "energy_sources": dict(sources)}


def stats(rows: list[dict[str, Any]], since: float | None = None, until: float | None = None) -> dict[str, Any]:
    """Edge share, latency percentiles and joules per request, overall and by tier and by scenario."""
    answered = [r for r in rows if r["status"] == 200 and r["tier"] and not r["error_code"]]
    errors = Counter(r["error_code"] or str(r["status"]) for r in rows if r not in answered)
    by_tier, by_scenario = defaultdict(list), defaultdict(list)
    for r in answered:
        by_tier[r["tier"]].append(r)
        by_scenario[r["scenario_name"] or "?"].append(r)
    edge = sum(r["tier"] == "edge" for r in answered)
    return {
        "range": {"since": since, "until": until,
                  "first": rows[0]["ts"] if rows else None, "last": rows[-1]["ts"] if rows else None},
        "requests": len(rows), "answered": len(answered), "errors": dict(errors),
        "edge_share": round(edge / len(answered), 4) if answered else None,
        "fallbacks": sum(bool(r["fallback_from"]) for r in answered),
        "explored": sum(bool(r.get("explore")) for r in answered),
        "with_feedback": sum(r.get("feedback_score") is not None for r in rows),
        "overall": _group(answered),
        "by_tier": {k: _group(v) for k, v in sorted(by_tier.items())},
        "by_scenario": {k: {**_group(v), "edge_share": round(sum(r["tier"] == "edge" for r in v) / len(v), 4)}
                        for k, v in sorted(by_scenario.items())},
    }


def format_stats(report: dict[str, Any]) -> str:
    def when(ts: float | None) -> str:
        return "-" if ts is None else datetime.fromtimestamp(ts).isoformat(timespec="seconds")

    def fmt(v: Any, spec: str = "") -> str:
        return "-" if v is None else format(v, spec)

    rng = report["range"]
    lines = [f"decision log: {report['requests']} requests from {when(rng['first'])} to {when(rng['last'])}",
             f"answered {report['answered']}, edge share {fmt(report['edge_share'], '.1%')}, "
             f"fallbacks {report['fallbacks']}, explored {report['explored']}, with feedback "
             f"{report['with_feedback']}"]
    if report["errors"]:
        lines.append("errors   " + ", ".join(f"{k}={v}" for k, v in sorted(report["errors"].items())))
    header = f"{'':<18}{'requests':>9}{'edge':>7}{'e2e p50':>10}{'e2e p99':>10}{'ttft p50':>10}{'J/req':>10}  source"
    lines += ["", header]

    def line(name: str, g: dict, edge: Any = None) -> str:
        src = ",".join(f"{k}:{v}" for k, v in g["energy_sources"].items()) or "-"
        return (f"{name:<18}{g['requests']:>9}{fmt(edge, '.0%'):>7}{fmt(g['e2e_ms_p50'], '.1f'):>10}"
                f"{fmt(g['e2e_ms_p99'], '.1f'):>10}{fmt(g['ttft_ms_p50'], '.1f'):>10}"
                f"{fmt(g['joules_per_request'], '.3f'):>10}  {src}")

    lines.append(line("all", report["overall"], report["edge_share"]))
    for tier, g in report["by_tier"].items():
        lines.append(line(f"tier {tier}", g))
    for name, g in report["by_scenario"].items():
        lines.append(line(f"scenario {name}", g, g["edge_share"]))
    lines.append("(latency in ms; J/req labelled by source: 'estimate' figures are not measurements)")
    return "\n".join(lines)
