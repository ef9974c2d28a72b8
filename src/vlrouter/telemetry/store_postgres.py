"""The decision log in PostgreSQL (``log.url: postgresql://...``): one log for every gateway replica.

psycopg 3, synchronous: the log is written by one thread per gateway process, off the event loop, so
an async driver would only add a second event loop; the ``binary`` wheel ships libpq, so nothing is
needed from the OS. JSON columns are ``JSONB`` (queryable in SQL); the rows read back are the same
dicts as from SQLite. Migrations run under an advisory lock, so replicas starting together upgrade a
log once. Images logged with ``log_content`` stay files (``log.path``'s ``-images`` folder): put it on
storage the replicas share if rows are to become training data.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlrouter.telemetry.schema import POSTGRES, insert_statements, migrate, rows_query
from vlrouter.telemetry.store_sqlite import images_dir

try:
    import psycopg
    from psycopg.rows import dict_row, tuple_row
except ImportError:  # the extra is optional: SQLite needs nothing
    psycopg = None

_MIGRATION_LOCK = 0x766C726F  # pg_advisory_xact_lock key ("vlro")
_PASSWORD = re.compile(r"(://[^:/@]+:)[^/]*@")  # up to the last @ before the path


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    return _PASSWORD.sub(r"\1***@", url)


class _Cursor:
    """``schema.SchemaCursor`` over one psycopg cursor."""

    dialect = POSTGRES

    def __init__(self, cur):
        self.cur = cur

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        self.cur.execute(sql, args)
        return self.cur.fetchall() if self.cur.description else []

    def columns(self, table: str) -> set[str]:
        rows = self.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = %s", (table,))
        return {r[0] for r in rows}

    def has_table(self, table: str) -> bool:
        return self.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]


class PostgresStore:
    """Open, migrate, write and read a decision log in a PostgreSQL database."""

    dialect = POSTGRES
    required_at_start = False  # the database may come up after the gateway: rows wait in the buffer

    def __init__(self, url: str, *, images: Path | None = None):
        if psycopg is None:
            raise ValueError("log.url is PostgreSQL but psycopg is not installed: pip install 'vlrouter[postgres]'")
        self.url = url
        self.images = images or images_dir(Path("data/decisions.db"))
        self.transient = (psycopg.OperationalError, psycopg.InterfaceError)  # server gone, connection lost
        self.errors = (psycopg.Error,)
        self._insert_decisions, self._insert_feedback = insert_statements(POSTGRES)
        self._reader_conn = None
        self._reader_lock = threading.Lock()

    def describe(self) -> str:
        return redact(self.url)

    def _open(self, **kwargs):
        return psycopg.connect(self.url, connect_timeout=5, application_name="vlrouter", **kwargs)

    def connect(self):
        """The writer's connection, with the schema brought up to date."""
        conn = self._open()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                migrate(_Cursor(cur))
        except BaseException:
            conn.close()
            raise
        return conn

    def write(self, conn, rows: list[tuple], feedback: list[tuple]) -> None:
        with conn.transaction(), conn.cursor() as cur:
            if rows:
                cur.executemany(self._insert_decisions, rows)
            if feedback:
                cur.executemany(self._insert_feedback, feedback)

    @staticmethod
    def close_quietly(conn) -> None:
        with contextlib.suppress(psycopg.Error):
            conn.close()

    def has_request(self, request_id: str) -> bool:
        """One reader connection per process, reopened when the server dropped it."""
        with self._reader_lock:
            for attempt in range(2):
                if self._reader_conn is None or self._reader_conn.closed:
                    self._reader_conn = self._open(autocommit=True)
                try:
                    return self._reader_conn.execute("SELECT 1 FROM decisions WHERE request_id = %s LIMIT 1",
                                                     (request_id,)).fetchone() is not None
                except self.transient:
                    self.close_quietly(self._reader_conn)
                    self._reader_conn = None
                    if attempt:
                        raise
        return False

    def read(self, since: float | None, until: float | None) -> list[dict[str, Any]]:
        try:
            with self._open(autocommit=True, row_factory=dict_row) as conn:
                if not _Cursor(conn.cursor(row_factory=tuple_row)).has_table("decisions"):
                    raise FileNotFoundError(f"no decision log in {self.describe()} (no decisions table)")
                sql, args = rows_query(POSTGRES, since, until)
                return conn.execute(sql, args).fetchall()
        except psycopg.Error as exc:
            raise ConnectionError(f"decision log {self.describe()}: {exc}") from exc

    def close(self) -> None:
        with self._reader_lock:
            if self._reader_conn is not None:
                self.close_quietly(self._reader_conn)
                self._reader_conn = None
