"""The decision log's schema, versioned, for both stores (SQLite and PostgreSQL).

One list of migrations, written once against a ``Dialect`` (the SQL types and the parameter marker
differ, nothing else does). ``migrate`` applies, in one transaction under the store's lock, every
migration newer than the version recorded in ``schema_version``, then adds any ``DecisionRecord``
field that the ``decisions`` table lacks: a log written by an older vlrouter (SQLite files from before
versioning included, which count as version 1) is upgraded in place when a gateway opens it, and a
branch that adds a record field needs no migration of its own. Several gateways opening the same log
at once serialise on the lock (``BEGIN IMMEDIATE`` in SQLite, an advisory lock in PostgreSQL).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vlrouter.telemetry.record import COLUMNS, JSON_COLUMNS

FEEDBACK_COLUMNS = {"request_id": "TEXT", "ts": "REAL", "score": "REAL", "comment": "TEXT"}


@dataclass(frozen=True)
class Dialect:
    """What differs between the stores' SQL: column types (by ``COLUMNS`` kind) and the parameter marker."""

    name: str
    types: dict[str, str]
    json_type: str
    param: str

    def column(self, name: str, kind: str) -> str:
        return f"{name} {self.json_type if name in JSON_COLUMNS else self.types[kind]}"

    def insert(self, table: str, columns: Sequence[str]) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([self.param] * len(columns))})"


SQLITE = Dialect("sqlite", {"TEXT": "TEXT", "REAL": "REAL", "INTEGER": "INTEGER"}, "TEXT", "?")
POSTGRES = Dialect("postgresql", {"TEXT": "TEXT", "REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT"}, "JSONB", "%s")


def _v1_tables(d: Dialect) -> list[str]:
    decisions = ", ".join(d.column(name, kind) for name, kind in COLUMNS.items())
    feedback = ", ".join(f"{name} {d.types[kind]}" for name, kind in FEEDBACK_COLUMNS.items())
    return [f"CREATE TABLE IF NOT EXISTS decisions ({decisions})",
            "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)",
            "CREATE INDEX IF NOT EXISTS decisions_request ON decisions (request_id)",
            f"CREATE TABLE IF NOT EXISTS feedback ({feedback})",
            "CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id)"]


def _v2_latest_feedback(d: Dialect) -> list[str]:
    # read_rows joins the latest score per request: one index range scan instead of a sort
    return ["CREATE INDEX IF NOT EXISTS feedback_request_ts ON feedback (request_id, ts)",
            "DROP INDEX IF EXISTS feedback_request"]


# (version, what it does, statements for a dialect); append only: a released version never changes
MIGRATIONS: list[tuple[int, str, Callable[[Dialect], list[str]]]] = [
    (1, "decisions and feedback tables", _v1_tables),
    (2, "feedback index on (request_id, ts) for the latest score", _v2_latest_feedback),
]
VERSION = MIGRATIONS[-1][0]


class SchemaCursor:
    """What ``migrate`` needs of a store: run SQL, list a table's columns, and whether a table exists."""

    dialect: Dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]: ...
    def columns(self, table: str) -> set[str]: ...
    def has_table(self, table: str) -> bool: ...


def current_version(cur: SchemaCursor) -> int:
    """The recorded version; 1 for a log from before versioning (tables, no ``schema_version``); 0: empty."""
    if cur.has_table("schema_version"):
        (version,) = cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0]
        return int(version)
    return 1 if cur.has_table("decisions") else 0


def migrate(cur: SchemaCursor) -> tuple[int, int]:
    """Bring the log to ``VERSION`` and the record's columns; returns (version before, version after).

    Call inside a transaction that holds the store's write lock."""
    d = cur.dialect
    before = current_version(cur)
    cur.execute(f"CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                f"description TEXT, applied_at {d.types['REAL']})")
    for version, description, statements in MIGRATIONS:
        if version <= before:
            continue
        for sql in statements(d):
            cur.execute(sql)
        cur.execute(d.insert("schema_version", ("version", "description", "applied_at")),
                    (version, description, time.time()))
    have = cur.columns("decisions")
    for name, kind in COLUMNS.items():  # fields added to DecisionRecord since the table was made
        if name not in have:
            cur.execute(f"ALTER TABLE decisions ADD COLUMN {d.column(name, kind)}")
    return before, max(before, VERSION)


def insert_statements(d: Dialect) -> tuple[str, str]:
    """The INSERTs of a decision row (``DecisionRecord.values()`` order) and of a feedback score."""
    return d.insert("decisions", list(COLUMNS)), d.insert("feedback", list(FEEDBACK_COLUMNS))


def rows_query(d: Dialect, since: float | None, until: float | None, *, feedback: bool = True
               ) -> tuple[str, list[float]]:
    """Every decision in [since, until) by time, with the latest feedback score per request joined in."""
    where, args = [], []
    if since is not None:
        where.append(f"d.ts >= {d.param}")
        args.append(since)
    if until is not None:
        where.append(f"d.ts < {d.param}")
        args.append(until)
    score = ("(SELECT f.score FROM feedback f WHERE f.request_id = d.request_id ORDER BY f.ts DESC LIMIT 1)"
             if feedback else "NULL")
    sql = f"SELECT d.*, {score} AS feedback_score FROM decisions d"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY d.ts", args
