"""Command line: ``vlrouter serve`` (the gateway), ``serve-model``, ``route | train | calibrate | eval`` and ``log``.

Run ``vlrouter COMMAND --help`` for the options of each command. Each command group registers its
own subcommands (``serving``, ``offline``, ``logs``); ``supervise`` runs the processes.
"""

from __future__ import annotations

import argparse
import sys

from vlrouter.cli import logs, offline, serving
from vlrouter.cli.supervise import bound_socket, free_port, wait_ready
from vlrouter.config import ConfigError

__all__ = ["bound_socket", "build_parser", "free_port", "main", "wait_ready"]


def build_parser() -> argparse.ArgumentParser:
    """The ``vlrouter`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="vlrouter",
        description="Edge-cloud routing inference server for vision-language models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serving, offline, logs):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a ``ConfigError`` prints ``vlrouter: <message>`` and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"vlrouter: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
