"""``DecisionLog`` on its own, on a real SQLite file: counts, drops, content and images, ``knows``, close.

Fast (no gateway, no model), so that the mutation check (``scripts/mutation_check.sh decision_log``)
can run them for every mutant; the gateway-level tests are ``test_decision_log.py`` and ``test_log_stores.py``.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import eventually, free_port
from tests.telemetry.test_log_stores import metric
from vlrouter.config import LogConfig
from vlrouter.telemetry import decision_log
from vlrouter.telemetry.decision_log import DecisionLog, images_dir, log_location, read_rows
from vlrouter.telemetry.record import DecisionRecord, image_name


def rec(i: int, **extra) -> DecisionRecord:
    return DecisionRecord(**{"request_id": f"r-{i}", "endpoint": "chat", "tier": "edge", "status": 200,
                             "scores": {"margin": 0.1 * i}, **extra})


def test_counts_are_exported_under_their_names_from_the_start(tmp_path):
    log = DecisionLog(tmp_path / "log.db")
    registry = CollectorRegistry()
    log.bind(registry)
    for reason in ("buffer_full", "rejected", "shutdown"):
        assert metric(registry, f'vlrouter_decision_log_dropped_total{{reason="{reason}"}}') == 0
    assert metric(registry, "vlrouter_decision_log_written_total") == 0
    for i in range(3):
        log.record(rec(i))
    log.close()
    assert metric(registry, "vlrouter_decision_log_written_total") == 3 and log.written == 3
    assert metric(registry, "vlrouter_decision_log_write_failures_total") == 0 and log.failures == 0
    assert metric(registry, "vlrouter_decision_log_pending") == 0
    assert not log._thread.is_alive()
    db = sqlite3.connect(tmp_path / "log.db")  # write-ahead logging: workers read while one writes
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_a_full_buffer_drops_rows_and_scores_and_counts_them(tmp_path):
    log = DecisionLog(tmp_path / "log.db", max_pending=0)
    registry = CollectorRegistry()
    log.bind(registry)
    log.record(rec(0))
    log.add_feedback("r-0", 1.0)
    log.close()
    assert log.dropped == {"buffer_full": 2} and log.written == 0
    assert metric(registry, 'vlrouter_decision_log_dropped_total{reason="buffer_full"}') == 2
    assert read_rows(tmp_path / "log.db") == []
    assert not log.knows("r-0")  # a dropped row was never queued


def test_a_row_the_database_refuses_is_dropped_alone(tmp_path):
    log = DecisionLog(tmp_path / "log.db")
    rows = [rec(0), rec(1, energy_source=object()), rec(2, prompt_tokens=2**70)]  # unbindable, overflows
    rows.append(rec(3))
    for row in rows:
        log.record(row)
    log.add_feedback("r-0", 0.5)
    log.close()
    assert log.dropped == {"rejected": 2} and log.written == 2
    got = read_rows(tmp_path / "log.db")
    assert [r["request_id"] for r in got] == ["r-0", "r-3"] and got[0]["feedback_score"] == 0.5

    pair = DecisionLog(tmp_path / "pair.db")  # a batch of two: the good one still lands
    pair.record(rec(5, energy_source=object()))
    pair.record(rec(6))
    pair.close()
    assert pair.dropped == {"rejected": 1} and [r["request_id"] for r in read_rows(tmp_path / "pair.db")] == ["r-6"]


def test_content_and_images_are_kept_only_with_log_content(tmp_path):
    png = b"\x89PNG fake bytes"
    name = image_name("ab" * 32, "image/png")
    content = {"messages": [{"role": "user", "text": "hi", "images": [name]}]}
    off = DecisionLog(tmp_path / "off.db")
    off.record(rec(0, content=content, images={name: png}))
    off.close()
    assert read_rows(tmp_path / "off.db")[0]["content"] is None
    assert not images_dir(tmp_path / "off.db").exists()

    on = DecisionLog(tmp_path / "on.db", log_content=True)
    second = image_name("cd" * 32, "image/jpeg")
    on.record(rec(0, content=content, images={name: png}))
    on.record(rec(1, content=content, images={name: b"other bytes, same name"}))  # stored once
    on.record(rec(2, content=content, images={name: png, second: b"jpeg bytes"}))  # one stored, one new
    on.close()
    rows = read_rows(tmp_path / "on.db")
    assert [r["content"] for r in rows] == [content, content, content]
    folder = images_dir(tmp_path / "on.db")
    assert folder == tmp_path / "on-images" and sorted(p.name for p in folder.iterdir()) == sorted([name, second])
    assert (folder / name).read_bytes() == png and (folder / second).read_bytes() == b"jpeg bytes"


def test_timestamps_are_set_once(tmp_path):
    log = DecisionLog(tmp_path / "log.db")
    start = time.time()
    log.record(rec(0))
    log.record(rec(1, ts=12.5))
    log.close()
    ts = {r["request_id"]: r["ts"] for r in read_rows(tmp_path / "log.db")}
    assert ts["r-1"] == 12.5 and start <= ts["r-0"] <= time.time()


def test_knows_queued_stored_and_late_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(decision_log, "RECENT_IDS", 2)
    monkeypatch.setattr(decision_log, "KNOWS_RETRY_S", (0.05, 0.3, 0.3))
    path = tmp_path / "log.db"
    log = DecisionLog(path)
    for i in range(3):
        log.record(rec(i))
    assert list(log._recent) == ["r-1", "r-2"]  # the oldest id left memory
    eventually(lambda: log.written == 3)
    assert log.knows("r-0") and log.knows("r-2")  # stored / queued

    calls = []
    has_request = log.store.has_request
    monkeypatch.setattr(log.store, "has_request", lambda rid: calls.append(rid) or has_request(rid))
    started = time.monotonic()
    assert not log.knows("r-missing")
    assert len(calls) == 4 and time.monotonic() - started >= 0.65  # looked again after each wait

    other = DecisionLog(path)  # another replica, whose row lands while this one waits
    timer = threading.Timer(0.15, other.record, [rec(9)])
    timer.start()
    calls.clear()
    assert log.knows("r-9") and 2 <= len(calls) <= 4
    timer.join()
    other.close()
    log.close()


def test_close_writes_every_batch_before_returning(tmp_path, monkeypatch):
    monkeypatch.setattr(decision_log, "FLUSH_S", 30.0)  # only close() wakes the writer
    log = DecisionLog(tmp_path / "log.db")
    for i in range(decision_log.BATCH * 2 + 5):
        log.record(rec(i, ts=float(i)))
    log.close()
    rows = read_rows(tmp_path / "log.db")
    assert [r["request_id"] for r in rows] == [f"r-{i}" for i in range(decision_log.BATCH * 2 + 5)]
    assert log.written == len(rows) and not log._thread.is_alive()


def test_rows_read_back_by_time_window_with_the_latest_score(tmp_path):
    log = DecisionLog(tmp_path / "log.db")
    for i in range(5):
        log.record(rec(i, ts=float(i)))
    log.add_feedback("r-1", 0.0)
    log.add_feedback("r-1", 0.75, "second thoughts")
    log.close()
    path = tmp_path / "log.db"
    assert [r["request_id"] for r in read_rows(path, since=1.0, until=3.0)] == ["r-1", "r-2"]
    assert [r["request_id"] for r in read_rows(path, since=3.0)] == ["r-3", "r-4"]
    assert [r["request_id"] for r in read_rows(path, until=1.0)] == ["r-0"]
    rows = {r["request_id"]: r for r in read_rows(f"sqlite:///{path}")}
    assert rows["r-1"]["feedback_score"] == 0.75 and rows["r-2"]["feedback_score"] is None
    assert rows["r-3"]["scores"] == {"margin": pytest.approx(0.3)}  # JSON decoded


def test_where_a_configured_log_lives(tmp_path):
    assert log_location(LogConfig(path=tmp_path / "a.db")) == tmp_path / "a.db"
    assert log_location(LogConfig(url="postgresql://u:pw@db/log")) == "postgresql://u:pw@db/log"
    assert images_dir(f"sqlite:///{tmp_path / 'b.db'}") == tmp_path / "b-images"
    assert images_dir(Path("x/c.db")) == Path("x/c-images")
    assert images_dir("postgresql://u:pw@db/log") == Path("data/decisions-images")  # no connection needed
    (tmp_path / "a-file").write_text("")
    started = time.monotonic()
    bad = tmp_path / "a-file" / "log.db"
    with pytest.raises(RuntimeError, match=f"^decision log {re.escape(str(bad))}: "):
        DecisionLog(bad)  # its folder is a file: a configuration error
    assert time.monotonic() - started < 5  # said at once, not after the writer's start-up wait


def test_an_unreachable_database_is_retried_with_backoff_and_rows_are_dropped_at_shutdown(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql://vlrouter@127.0.0.1:{free_port()}/log"  # nothing listens: connections are refused
    log = DecisionLog(url, images=tmp_path / "imgs")  # PostgreSQL may come up later: no error at start
    assert log.images == tmp_path / "imgs"
    registry = CollectorRegistry()
    log.bind(registry)
    log.record(rec(0))
    log.add_feedback("r-0", 1.0)
    assert log.knows("r-0")  # queued here
    time.sleep(1.2)  # attempts at about 0, 0.1, 0.3, 0.7 s (the wait doubles from RETRY_S)
    assert 3 <= log.failures <= 6 and log.written == 0
    started = time.monotonic()
    log.close(timeout=1.5)  # gives up on the database one second before its timeout
    waited = time.monotonic() - started
    assert 0.3 <= waited <= 1.6
    assert log.dropped == {"shutdown": 2} and not log._thread.is_alive()
    assert metric(registry, 'vlrouter_decision_log_dropped_total{reason="shutdown"}') == 2
    assert metric(registry, "vlrouter_decision_log_write_failures_total") == log.failures


def test_reading_a_missing_log_or_one_without_feedback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no decision log at .*missing\.db"):
        read_rows(tmp_path / "missing.db")
    old = tmp_path / "old.db"  # as the first versions wrote it: no feedback table yet
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE decisions (request_id TEXT, ts REAL, status INTEGER)")
    db.execute("INSERT INTO decisions VALUES ('r-old', 1.0, 200)")
    db.commit()
    db.close()
    assert read_rows(old) == [{"request_id": "r-old", "ts": 1.0, "status": 200, "feedback_score": None}]
