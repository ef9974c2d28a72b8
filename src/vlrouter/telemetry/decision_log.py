"""The decision log: one row per request in an embedded SQLite database (WAL).

Rows are queued from the event loop without blocking and written by one thread; ``close`` drains the
queue (the gateway calls it at shutdown, after in-flight requests have finished). Prompt text and
image hashes are stored only with ``log_content: true``, so that a row can become training data.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLUMNS = {
    "request_id": "TEXT", "ts": "REAL", "endpoint": "TEXT", "model_requested": "TEXT",
    "scenario_name": "TEXT", "w_speed": "REAL", "w_quality": "REAL", "w_energy": "REAL",
    "feature_spec_version": "INTEGER", "policy": "TEXT", "decided_tier": "TEXT", "decided_model": "TEXT",
    "tier": "TEXT", "backend": "TEXT", "scores": "TEXT", "threshold": "REAL", "fallback_from": "TEXT",
    "route_ms": "REAL", "ttft_ms": "REAL", "e2e_ms": "REAL", "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER", "stream": "INTEGER", "status": "INTEGER", "error_code": "TEXT",
    "content": "TEXT",
}
_STOP = object()


class DecisionLog:
    def __init__(self, path: str | Path, *, log_content: bool = False):
        self.path = Path(path)
        self.log_content = log_content
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue = queue.Queue()
        self.written = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"decision log {self.path}: {self._error}") from self._error

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS decisions ({cols})")
        db.execute("CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)")
        db.execute("CREATE INDEX IF NOT EXISTS decisions_request ON decisions (request_id)")
        return db

    def _run(self) -> None:
        try:
            db = self._connect()
        except sqlite3.Error as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        sql = f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < 256:  # write what has piled up in one transaction
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stop = True
                batch = [row for row in batch if row is not _STOP]
            rows = [tuple(row.get(c) for c in COLUMNS) for row in batch]
            if rows:
                try:
                    with db:
                        db.executemany(sql, rows)
                    self.written += len(rows)
                except sqlite3.Error:
                    log.exception("decision log: could not write %d rows", len(rows))
        db.close()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (never blocks). Unknown keys are ignored; dicts become JSON."""
        clean = {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in row.items() if k in COLUMNS}
        if not self.log_content:
            clean.pop("content", None)
        clean.setdefault("ts", time.time())
        self._queue.put(clean)

    def close(self, timeout: float = 30.0) -> None:
        """Flush every queued row and stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("decision log: writer did not finish within %.0fs", timeout)
