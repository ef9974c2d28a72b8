"""Both decision-log stores (SQLite, a real PostgreSQL): same rows back, migrations, the database-down policy."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import eventually
from tests.telemetry.postgres import PostgresServer, unavailable
from vlrouter.telemetry import schema
from vlrouter.telemetry.decision_log import DecisionLog, read_rows
from vlrouter.telemetry.record import COLUMNS, DecisionRecord


def record(i: int, **extra) -> DecisionRecord:
    values = {"request_id": f"req-{i}", "endpoint": "chat", "tier": "edge", "backend": "edge", "status": 200,
              "scores": {"margin": 0.25, "cloud": 0.5 + i}, "explanation": {"why": ["short"]}, "prompt_tokens": 3,
              "completion_tokens": 1, "energy_j": 0.5, "energy_source": "estimate", "e2e_ms": 10.0 + i}
    return DecisionRecord(**{**values, **extra})


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return request.getfixturevalue("pg_url")


def test_rows_and_feedback_read_back_the_same_from_both_stores(location):
    log = DecisionLog(location)
    for i in range(300):  # more than one batch
        log.record(record(i))
    log.add_feedback("req-7", 0.25)
    log.add_feedback("req-7", 1.0, "better")  # the latest score wins
    assert log.knows("req-299")  # queued here: known before it is written
    log.close()
    assert log.written == 300 and not log.dropped
    rows = read_rows(location)
    assert [r["request_id"] for r in rows] == [f"req-{i}" for i in range(300)]  # ordered by time
    by_id = {r["request_id"]: r for r in rows}
    assert by_id["req-7"]["feedback_score"] == 1.0 and by_id["req-8"]["feedback_score"] is None
    assert by_id["req-3"]["scores"] == {"margin": 0.25, "cloud": 3.5}  # JSON columns decoded
    assert by_id["req-3"]["explanation"] == {"why": ["short"]} and by_id["req-3"]["content"] is None
    assert set(rows[0]) == {*COLUMNS, "feedback_score"}
    cut = rows[100]["ts"]
    assert len(read_rows(location, since=cut)) == 200 and len(read_rows(location, until=cut)) == 100
    fresh = DecisionLog(location)  # another process: only the database knows these ids
    try:
        assert fresh.knows("req-0") and not fresh.knows("req-missing")
    finally:
        fresh.close()


def _legacy_sqlite(path) -> None:
    """A log as vlrouter wrote it before the schema was versioned: fewer columns, no schema_version."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE decisions (request_id TEXT, ts REAL, endpoint TEXT, tier TEXT, status INTEGER)")
    db.execute("INSERT INTO decisions VALUES ('req-old', 1.0, 'chat', 'edge', 200)")
    db.execute("CREATE TABLE feedback (request_id TEXT, ts REAL, score REAL, comment TEXT)")
    db.execute("INSERT INTO feedback VALUES ('req-old', 2.0, 0.5, NULL)")
    db.commit()
    db.close()


def test_an_older_sqlite_log_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    _legacy_sqlite(path)
    log = DecisionLog(path)  # a plain path still means SQLite
    log.record(record(1))
    log.close()
    db = sqlite3.connect(path)
    versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    columns = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert versions == [v for v, _, _ in schema.MIGRATIONS if v > 1] and max(versions) == schema.VERSION
    assert columns == set(COLUMNS) and "feedback_request_ts" in indexes and "feedback_request" not in indexes
    rows = {r["request_id"]: r for r in read_rows(path)}
    assert rows["req-old"]["feedback_score"] == 0.5 and rows["req-old"]["scores"] is None
    assert rows["req-1"]["scores"]["margin"] == 0.25


def test_an_older_postgres_log_gains_new_columns(pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # version 1, written before min_quality existed
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT, "
                     "applied_at DOUBLE PRECISION)")
        conn.execute("INSERT INTO schema_version VALUES (1, 'decisions and feedback tables', 0)")
        conn.execute("CREATE TABLE decisions (request_id TEXT, ts DOUBLE PRECISION, status BIGINT)")
        conn.execute("CREATE TABLE feedback (request_id TEXT, ts DOUBLE PRECISION, score DOUBLE PRECISION, "
                     "comment TEXT)")
        conn.execute("INSERT INTO decisions VALUES ('req-old', 1.0, 200)")
    logs = [DecisionLog(pg_url) for _ in range(3)]  # replicas starting together migrate once
    logs[0].record(record(1, min_quality=0.9))
    for log in logs:
        log.close()
    with psycopg.connect(pg_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        kinds = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'decisions'").fetchall())
    assert versions == [1, 2] and set(kinds) == set(COLUMNS)
    assert kinds["scores"] == "jsonb" and kinds["min_quality"] == "double precision"
    assert [r["min_quality"] for r in read_rows(pg_url)] == [None, 0.9]


def metric(registry, name: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_database_down_rows_wait_retry_and_drops_are_counted():
    server = PostgresServer()
    try:
        url = server.database()
        log = DecisionLog(url, max_pending=150)
        registry = CollectorRegistry()
        log.bind(registry)
        log.record(record(0))
        eventually(lambda: log.written == 1)
        server.halt()  # the database goes away: requests must not notice
        log.record(record(1))
        eventually(lambda: log.failures > 0)  # the writer found out (the row went back to the buffer)
        started = time.perf_counter()
        for i in range(2, 201):
            log.record(record(i))
        assert time.perf_counter() - started < 0.5  # never blocks the caller
        # drops are counted as they happen, in the caller
        assert metric(registry, 'vlrouter_decision_log_dropped_total{reason="buffer_full"}') == 50
        assert metric(registry, "vlrouter_decision_log_write_failures_total") >= 1
        assert metric(registry, "vlrouter_decision_log_pending") == 150
        assert log.knows("req-from-another-replica")  # cannot be checked now: the feedback is accepted
        server.start()  # back: the buffered rows are written in order
        eventually(lambda: log.written >= 151, timeout_s=30)
        assert log.written == 151 and metric(registry, "vlrouter_decision_log_written_total") == 151
        server.halt()
        log.record(record(500))
        log.close(timeout=2)  # still down at shutdown: the row is dropped and counted, not waited on forever
        assert log.dropped == {"buffer_full": 50, "shutdown": 1}
        server.start()
        assert [r["request_id"] for r in read_rows(url)] == [f"req-{i}" for i in range(151)]
    finally:
        server.stop()


def test_unknown_scheme_and_missing_log_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="sqlite:///PATH or postgresql://"):
        DecisionLog("mysql://x@h/db")
    with pytest.raises(FileNotFoundError):
        read_rows(tmp_path / "nothing.db")


def test_export_and_training_data_read_either_store(location, tmp_path):
    from vlrouter.cli import main
    from vlrouter.eval.dataset import import_decision_log

    log = DecisionLog(location, log_content=True)
    for i in range(12):
        rec = record(i, tier="edge" if i % 2 else "cloud", backend="edge" if i % 2 else "cloud")
        rec.content = {"messages": [{"role": "user", "text": f"question {i}", "images": []}]}
        log.record(rec)
        log.add_feedback(rec.request_id, i / 11)
    log.close()
    ds = import_decision_log(location, min_rows=10)  # what `vlrouter train --from-log` reads
    assert len(ds.queries) == 12 and [m.name for m in ds.models] == ["cloud", "edge"]
    assert ds.quality[3, 1] == 3 / 11 and ds.queries[3].text == "question 3"
    out = tmp_path / "rows.jsonl"
    assert main(["log", "export", "--db", str(location), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 12
    assert main(["log", "stats", "--db", "mysql://h/db"]) == 2  # a clear error, not a traceback


def test_locations_and_redaction():
    from vlrouter.telemetry.decision_log import open_store
    from vlrouter.telemetry.store_postgres import redact

    assert open_store("sqlite:///data/x.db").path == Path("data/x.db")
    assert open_store("sqlite:////var/lib/x.db").path == Path("/var/lib/x.db")
    assert open_store(Path("plain.db")).path == Path("plain.db")
    assert redact("postgresql://vl:s3cr@t@db:5432/log") == "postgresql://vl:***@db:5432/log"
    assert redact("postgresql://vl@db/log") == "postgresql://vl@db/log"
    assert open_store("postgres://vl:pw@db/log").describe() == "postgres://vl:***@db/log"
