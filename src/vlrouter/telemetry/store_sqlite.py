"""The decision log in an embedded SQLite file (WAL): the default, one box and its workers.

Gateway workers of one ``vlrouter serve --workers N`` share the file (WAL, a 30 s busy timeout);
replicas on other hosts need the PostgreSQL store (``telemetry.store_postgres``). Images logged with
``log_content`` are files in ``<log>-images/`` beside the database.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlrouter.telemetry.schema import SQLITE, insert_statements, migrate, rows_query


def images_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + "-images")


class _Cursor:
    """``schema.SchemaCursor`` over one SQLite connection."""

    dialect = SQLITE

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        return self.db.execute(sql, args).fetchall()

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}

    def has_table(self, table: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                               ).fetchone() is not None


class SQLiteStore:
    """Open, migrate, write and read one SQLite decision log."""

    dialect = SQLITE
    transient: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)  # locked, disk I/O, disk full
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)  # OSError: the folder cannot be made
    required_at_start = True  # a file that cannot be opened is a configuration error

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.images = images_dir(self.path)
        self._insert_decisions, self._insert_feedback = insert_statements(SQLITE)

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> sqlite3.Connection:
        """The writer's connection, with the schema brought up to date."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # workers may share the file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")  # the write lock: one worker migrates, the others wait for it
        try:
            migrate(_Cursor(db))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise
        return db

    def write(self, db: sqlite3.Connection, rows: list[tuple], feedback: list[tuple]) -> None:
        db.execute("BEGIN")
        try:
            db.executemany(self._insert_decisions, rows)
            db.executemany(self._insert_feedback, feedback)
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    @staticmethod
    def close_quietly(db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def close(self) -> None:
        """Nothing held between reads (each opens the file read-only)."""

    def _reader(self) -> contextlib.closing[sqlite3.Connection]:
        if not self.path.is_file():
            raise FileNotFoundError(f"no decision log at {self.path}")
        return contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30))

    def has_request(self, request_id: str) -> bool:
        with self._reader() as db:
            return db.execute("SELECT 1 FROM decisions WHERE request_id = ? LIMIT 1", (request_id,)
                              ).fetchone() is not None

    def read(self, since: float | None, until: float | None) -> list[dict[str, Any]]:
        with self._reader() as db:
            db.row_factory = sqlite3.Row
            has_feedback = _Cursor(db).has_table("feedback")
            sql, args = rows_query(self.dialect, since, until, feedback=has_feedback)
            return [dict(r) for r in db.execute(sql, args)]

