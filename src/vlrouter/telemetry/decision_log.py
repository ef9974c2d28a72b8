"""The decision log: one row per request, in SQLite (default) or PostgreSQL (``log.url``).

Rows are appended to an in-memory deque from the event loop (no lock, no thread wake-up per request)
and written in batches by one thread every ``FLUSH_S`` seconds; ``close`` drains what is pending
(the gateway calls it at shutdown, after in-flight requests have finished). The schema is versioned
(``telemetry.schema``) and the same for both stores (``store_sqlite``, ``store_postgres``).

When the database cannot be reached, requests are never held up: rows wait in the buffer, the writer
reconnects with exponential backoff (``RETRY_S`` up to ``RETRY_MAX_S``) and writes them in order once
it is back. The buffer is bounded (``log.max_pending`` rows): beyond it new rows are dropped, and every
drop is counted in ``/metrics`` (``vlrouter_decision_log_dropped_total{reason}``: ``buffer_full``;
``rejected``, rows the database refused; ``shutdown``, rows still unwritable when the gateway stopped).

Prompt text and images are stored only with ``log_content: true``, so that a row can become training
data: the text in the row's ``content`` JSON, each image once as a file (``<log>-images/<sha256>.<ext>``).
Feedback (``POST /v1/feedback``) goes to a ``feedback`` table; the latest score per request wins
when rows are read back (``read_rows``), exported or turned into a routing dataset.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any

from vlrouter.telemetry.record import COLUMNS, JSON_COLUMNS, DecisionRecord, image_name
from vlrouter.telemetry.store_sqlite import SQLiteStore
from vlrouter.telemetry.store_sqlite import images_dir as _sqlite_images

__all__ = ["COLUMNS", "DecisionLog", "image_name", "images_dir", "log_location", "open_store", "read_rows"]
log = logging.getLogger(__name__)

FLUSH_S = 0.05  # how long a row may wait in memory before it is written
BATCH = 256  # rows a transaction
# request ids remembered for /v1/feedback until their rows are on disk (within FLUSH_S): a few
# seconds of traffic; older ids are found in the database. (100,000 cost ~28 MB of RSS in the soak.)
RECENT_IDS = 8192
MAX_PENDING = 50_000  # rows held while the database is unreachable (a few KB each: ~100 MB at most)
RETRY_S, RETRY_MAX_S = 0.1, 5.0
# a row another replica answered may still be in that replica's buffer: look again after these waits
KNOWS_RETRY_S = (2 * FLUSH_S, 0.25, 0.5)


def _is_postgres(location: str | Path) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0] in ("postgresql", "postgres")


def _sqlite_path(location: str | Path) -> Path:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path`` or a plain path."""
    text = str(location)
    return Path(text[len("sqlite:///"):]) if text.startswith("sqlite:///") else Path(text)


def open_store(location: str | Path, *, images: Path | None = None):
    """The store for a ``log.url`` (``sqlite:///...`` or ``postgresql://...``) or a SQLite file path."""
    if _is_postgres(location):
        from vlrouter.telemetry.store_postgres import PostgresStore

        return PostgresStore(str(location), images=images)
    if isinstance(location, str) and "://" in location and not location.startswith("sqlite://"):
        raise ValueError(f"log.url {location.split('://', 1)[0]}://...: use sqlite:///PATH or postgresql://...")
    return SQLiteStore(_sqlite_path(location))


def log_location(cfg) -> str | Path:
    """Where the configured log (``settings.log``) is: ``url`` when set, else the SQLite file ``path``."""
    return cfg.url.get_secret_value() if cfg.url else cfg.path


def images_dir(location: str | Path) -> Path:
    """Where the images of a log's rows are stored (beside a SQLite file; ``data/decisions-images``
    for PostgreSQL unless the gateway's ``log.path`` says otherwise)."""
    return open_store(location).images if _is_postgres(location) else _sqlite_images(_sqlite_path(location))


class DecisionLog:
    """The store of decision records and feedback, written by one background thread."""

    def __init__(self, location: str | Path, *, log_content: bool = False, max_pending: int = MAX_PENDING,
                 images: Path | None = None):
        self.store = open_store(location, images=images)
        self.log_content = log_content
        self.max_pending = max_pending
        self.images = self.store.images  # ``images`` (log.path's folder) applies to PostgreSQL only
        self._pending: deque = deque()  # DecisionRecord rows and feedback tuples, in arrival order
        self._wake = threading.Event()  # set by close() only: rows wait at most FLUSH_S
        self._stopping = False
        self._deadline = float("inf")  # monotonic time after which close() gives up on an unreachable store
        self._recent: OrderedDict[str, None] = OrderedDict()  # ids queued lately (may not be stored yet)
        self.written = 0
        self.dropped: Counter[str] = Counter()
        self.failures = 0  # write or connect attempts that failed and were retried
        self._metrics: tuple | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._connected = False
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None and self.store.required_at_start:
            raise RuntimeError(f"decision log {self.store.describe()}: {self._error}") from self._error

    def bind(self, registry) -> None:
        """Count writes, drops, retries and the buffer in ``registry`` (the gateway's Prometheus registry)."""
        from prometheus_client import Counter as PCounter
        from prometheus_client import Gauge

        written = PCounter("vlrouter_decision_log_written", "Decision rows written to the log", registry=registry)
        dropped = PCounter("vlrouter_decision_log_dropped", "Decision rows lost: buffer_full (database "
                           "unreachable too long), rejected (refused by the database), shutdown (unwritable at "
                           "exit)", ["reason"], registry=registry)
        failures = PCounter("vlrouter_decision_log_write_failures", "Failed connects or writes to the decision "
                            "log database (the rows stay buffered and are retried)", registry=registry)
        pending = Gauge("vlrouter_decision_log_pending", "Rows and scores waiting to be written",
                        registry=registry, multiprocess_mode="livesum")
        for reason in ("buffer_full", "rejected", "shutdown"):
            dropped.labels(reason).inc(self.dropped[reason])  # exported as 0 before the first drop
        written.inc(self.written)  # what happened before binding (a first connect attempt) counts too
        failures.inc(self.failures)
        self._metrics = (written, dropped, failures, pending)

    def _count(self, *, written: int = 0, dropped: tuple[str, int] | None = None, failures: int = 0) -> None:
        self.written += written
        self.failures += failures
        if dropped:
            self.dropped[dropped[0]] += dropped[1]
        if self._metrics is not None:
            m_written, m_dropped, m_failures, m_pending = self._metrics
            if written:
                m_written.inc(written)
            if dropped:
                m_dropped.labels(dropped[0]).inc(dropped[1])
            if failures:
                m_failures.inc(failures)
            m_pending.set(len(self._pending))

    # ------------------------------------------------------------------ the writer thread
    def _connect(self, delay: float):
        """A migrated connection, or None after a failed attempt (logged once per outage)."""
        try:
            conn = self.store.connect()
        except self.store.errors as exc:
            self._error = exc
            self._ready.set()
            if self.failures == 0 or delay >= RETRY_MAX_S:
                log.error("decision log %s unreachable (%s); buffering rows and retrying", self.store.describe(),
                          str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self._count(failures=1)
            return None
        if self._error is not None:
            log.warning("decision log %s reachable again", self.store.describe())
        self._error = None
        self._ready.set()
        return conn

    def _run(self) -> None:
        conn, delay = None, RETRY_S
        while True:
            if conn is None:
                conn = self._connect(delay)
                if conn is None and self.store.required_at_start and not self._connected:
                    return  # the constructor raises: a SQLite file that cannot be opened is a config error
                self._connected = self._connected or conn is not None
            stopping = self._stopping  # read before draining: whatever was queued before close() is written
            if conn is not None:
                conn = self._drain(conn)
                delay = RETRY_S if conn is not None else delay
            if stopping and (not self._pending or time.monotonic() > self._deadline):
                break
            if conn is None:
                time.sleep(min(delay, max(0.0, self._deadline - time.monotonic())))
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                self._wake.wait(FLUSH_S)
        if self._pending:
            n = len(self._pending)
            self._pending.clear()
            self._count(dropped=("shutdown", n))
            log.error("decision log %s: %d rows could not be written before shutdown", self.store.describe(), n)
        if conn is not None:
            self.store.close_quietly(conn)
        self.store.close()

    def _drain(self, conn):
        """Write every pending row and score, ``BATCH`` a transaction; None when the connection was lost
        (the batch goes back to the front of the buffer)."""
        while self._pending:
            if isinstance(self._pending[0], list):  # one item of a refused batch, retried alone
                batch = self._pending.popleft()
            else:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            records = [item for item in batch if isinstance(item, DecisionRecord)]
            feedback = [item for item in batch if isinstance(item, tuple)]
            for rec in records:
                self._save_images(rec.images)
            try:
                self.store.write(conn, [rec.values() for rec in records], feedback)
            except self.store.transient as exc:
                self._pending.extendleft(reversed(batch))
                log.warning("decision log %s: write failed (%s); %d rows buffered, retrying",
                            self.store.describe(), type(exc).__name__, len(self._pending))
                self._count(failures=1)
                self.store.close_quietly(conn)
                return None
            except Exception:  # refused (or unbindable) rows must not stop the writer
                if len(batch) > 1:  # one bad row must not take its batch with it: write them one by one
                    self._pending.extendleft(reversed([[item] for item in batch]))
                    continue
                log.exception("decision log: the database refused a %s", "row" if records else "score")
                self._count(dropped=("rejected", len(records)))
                continue
            self._count(written=len(records))
        return conn

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

    # ------------------------------------------------------------------ the gateway's side
    def record(self, rec: DecisionRecord) -> None:
        """Queue one record (never blocks). Its content and images are kept only with ``log_content``."""
        if len(self._pending) >= self.max_pending:  # the database has been unreachable for a while
            self._count(dropped=("buffer_full", 1))
            return
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
        if len(self._pending) >= self.max_pending:
            self._count(dropped=("buffer_full", 1))
            return
        self._pending.append((request_id, time.time(), float(score), comment))

    def knows(self, request_id: str) -> bool:
        """Whether a row with this request id was logged (queued here lately, or stored). Blocking: run
        in a thread. A row another worker or replica answered may still be in its buffer: look again a
        few times within a second. While the database is unreachable, ids cannot be checked: the score
        is accepted (and buffered like the rows)."""
        if request_id in self._recent:
            return True
        for wait in (*KNOWS_RETRY_S, None):
            try:
                if self.store.has_request(request_id):
                    return True
            except FileNotFoundError:
                pass  # a SQLite log whose first rows are not written yet
            except self.store.transient as exc:
                log.warning("decision log: cannot check request %s (%s); accepting its feedback", request_id, exc)
                return True
            if wait is not None:
                time.sleep(wait)
        return False

    def close(self, timeout: float = 30.0) -> None:
        """Flush every queued row and stop the writer (rows still unwritable after ``timeout`` are dropped)."""
        self._deadline = time.monotonic() + max(0.0, timeout - 1.0)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("decision log: writer did not finish within %.0fs", timeout)


# ---------------------------------------------------------------------- reading back
def read_rows(location: str | Path, *, since: float | None = None, until: float | None = None
              ) -> list[dict[str, Any]]:
    """Every decision row in [since, until) by time, with ``feedback_score`` (latest) joined in and the
    JSON columns decoded. ``location``: a SQLite path, ``sqlite:///PATH`` or ``postgresql://...``."""
    store = open_store(location)
    try:
        rows = store.read(since, until)
    finally:
        store.close()
    for row in rows:
        for key in JSON_COLUMNS:
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
    return rows
