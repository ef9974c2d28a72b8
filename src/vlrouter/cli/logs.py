"""``vlrouter log export | stats``: read the gateway's decision log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlrouter.config import ConfigError, load_settings


def cmd_log(args: argparse.Namespace) -> int:
    """Export the log's rows (JSON lines or Parquet) or print a summary of them."""
    from vlrouter.telemetry.decision_log import log_location, read_rows
    from vlrouter.telemetry.log_tools import export_rows, format_stats, parse_time, stats
    from vlrouter.telemetry.store_postgres import redact

    path = args.db
    if path is None:
        path = log_location(load_settings(args.config).log)
    try:
        since, until = parse_time(args.since), parse_time(args.until)
        rows = read_rows(path, since=since, until=until)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if args.log_command == "stats":
        report = stats(rows, since, until)
        print(json.dumps(report, indent=2) if args.json else format_stats(report))
        return 0
    try:
        n = export_rows(rows, args.out, args.format)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from exc
    if args.out is not None:
        print(f"exported {n} rows from {redact(str(path))} to {args.out} ({args.format})", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``log`` and its actions ``export`` and ``stats``."""
    lg = sub.add_parser("log", help="read the decision log: export rows or summarise them",
                        description="Read the gateway's decision log (SQLite or PostgreSQL). Times: ISO 8601 "
                                    "(2026-11-24 or 2026-11-24T08:00), a Unix timestamp, or a span back from now "
                                    "(30m, 6h, 7d).")
    lg_sub = lg.add_subparsers(dest="log_command", required=True, metavar="ACTION")
    for name, text in (("export", "write the rows (with their latest feedback score) as JSON lines or Parquet"),
                       ("stats", "edge share, p50/p99 latency and joules per request by tier and scenario")):
        p = lg_sub.add_parser(name, help=text, description=text)
        p.add_argument("--db", metavar="PATH|URL", help="decision log: a SQLite path, sqlite:///PATH or "
                       "postgresql://user:password@host/db (default: log.url, else log.path, of --config)")
        p.add_argument("--config", type=Path, help="YAML settings file (default: configs/default.yaml)")
        p.add_argument("--since", help="first time to include")
        p.add_argument("--until", help="time to stop before")
        if name == "export":
            p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
            p.add_argument("--out", type=Path, help="output file (jsonl default: stdout)")
        else:
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        p.set_defaults(func=cmd_log)
