"""The decision log: one row per request in an embedded SQLite database (WAL).

Rows are appended to an in-memory deque from the event loop (no lock, no thread wake-up per request)
and written in batches by one thread every ``FLUSH_S`` seconds; ``close`` drains what is pending
(the gateway calls it at shutdown, after in-flight requests have finished). Prompt text and images
are stored only with ``log_content: true``, so that a row can become training data: the text in the
row's ``content`` JSON, each image once under ``<log>-images/<sha256>.<ext>`` beside the database.
Feedback (``POST /v1/feedback``) goes to a ``feedback`` table; the latest score per request wins
when rows are read back (``read_rows``), exported or turned into a routing dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

from vlrouter.telemetry.record import COLUMNS, JSON_COLUMNS, DecisionRecord, image_name

__all__ = ["COLUMNS", "DecisionLog", "image_name", "images_dir", "read_rows"]
log = logging.getLogger(__name__)

FEEDBACK_COLUMNS = {"request_id": "TEXT", "ts": "REAL", "score": "REAL", "comment": "TEXT"}
FLUSH_S = 0.05  # how long a row may wait in memory before it is written
# request ids remembered for /v1/feedback until their rows are on disk (within FLUSH_S): a few
# seconds of traffic; older ids are found in SQLite. (100,000 cost ~28 MB of RSS in the soak.)
RECENT_IDS = 8192


def images_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + "-images")


class DecisionLog:
    """The SQLite store of decision records and feedback, written by one background thread."""

    def __init__(self, path: str | Path, *, log_content: bool = False):
        self.path = Path(path)
        self.log_content = log_content
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.images = images_dir(self.path)
        self._pending: deque = deque()  # DecisionRecord rows and feedback tuples, in arrival order
        self._wake = threading.Event()  # set by close() only: rows wait at most FLUSH_S
        self._stopping = False
        self._recent: OrderedDict[str, None] = OrderedDict()  # ids queued lately (may not be on disk yet)
        self.written = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"decision log {self.path}: {self._error}") from self._error

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)  # several gateway workers may share the file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS decisions ({cols})")
        db.execute("CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)")
        db.execute("CREATE INDEX IF NOT EXISTS decisions_request ON decisions (request_id)")
        have = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
        for name, kind in COLUMNS.items():  # a log written by an older version gains the new columns
            if name not in have:
                with contextlib.suppress(sqlite3.OperationalError):  # another worker added it first
                    db.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
        cols = ", ".join(f"{name} {kind}" for name, kind in FEEDBACK_COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS feedback ({cols})")
        db.execute("CREATE INDEX IF NOT EXISTS feedback_request ON feedback (request_id)")
        return db

    def _run(self) -> None:
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            self._wake.wait(FLUSH_S)
            stopping = self._stopping  # read before draining: whatever was queued before close() is written
            self._drain(db)
            if stopping:
                break
        db.close()

    def _drain(self, db: sqlite3.Connection) -> None:
        """Write every pending row and feedback score, up to 256 a transaction."""
        sql = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        fb_sql = f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) VALUES (?, ?, ?, ?)"
        while self._pending:
            batch = []
            while self._pending and len(batch) < 256:
                batch.append(self._pending.popleft())
            feedback = [item for item in batch if isinstance(item, tuple)]
            records = [item for item in batch if isinstance(item, DecisionRecord)]
            for rec in records:
                self._save_images(rec.images)
            rows = [rec.values() for rec in records]
            try:
                with db:
                    db.executemany(sql, rows)
                    db.executemany(fb_sql, feedback)
                self.written += len(rows)
            except sqlite3.Error:
                log.exception("decision log: could not write %d rows", len(rows))

    def _save_images(self, images: dict[str, bytes]) -> None:
        for name, data in images.items():
            target = self.images / name
            if target.exists():
                continue
            try:
                self.images.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(target)
            except OSError:
                log.exception("decision log: could not store image %s", name)

    def record(self, rec: DecisionRecord) -> None:
        """Queue one record (never blocks). Its content and images are kept only with ``log_content``."""
        if not self.log_content:
            rec.content, rec.images = None, {}
        if rec.ts is None:
            rec.ts = time.time()
        if rec.request_id:
            self._recent[rec.request_id] = None
            while len(self._recent) > RECENT_IDS:
                self._recent.popitem(last=False)
        self._pending.append(rec)

    def add_feedback(self, request_id: str, score: float, comment: str | None = None) -> None:
        """Queue a feedback score for a logged request (the latest one wins when read back)."""
        self._pending.append((request_id, time.time(), float(score), comment))

    def knows(self, request_id: str) -> bool:
        """Whether a row with this request id was logged (queued lately, or on disk). Blocking: run in a thread.

        A row another gateway worker answered may still be in that worker's memory: one more look
        after two flush periods covers it."""
        if request_id in self._recent:
            return True
        for attempt in range(2):
            with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as db:
                if db.execute("SELECT 1 FROM decisions WHERE request_id = ? LIMIT 1", (request_id,)).fetchone():
                    return True
            if attempt == 0:
                time.sleep(2 * FLUSH_S)
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Flush every queued row and stop the writer."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("decision log: writer did not finish within %.0fs", timeout)


# ---------------------------------------------------------------------- reading back
def read_rows(path: str | Path, *, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
    """Every decision row in [since, until) by time, with ``feedback_score`` (latest) joined in."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no decision log at {path}")
    where, args = [], []
    if since is not None:
        where.append("d.ts >= ?")
        args.append(since)
    if until is not None:
        where.append("d.ts < ?")
        args.append(until)
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        has_feedback = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'feedback'").fetchone() is not None
        score = ("(SELECT f.score FROM feedback f WHERE f.request_id = d.request_id ORDER BY f.ts DESC LIMIT 1)"
                 if has_feedback else "NULL")
        sql = f"SELECT d.*, {score} AS feedback_score FROM decisions d"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = [dict(r) for r in db.execute(sql + " ORDER BY d.ts", args)]
    for row in rows:
        for key in JSON_COLUMNS:
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
    return rows
