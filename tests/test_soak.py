"""A short soak (scripts/soak.py, ~20 s): good, bad and streamed requests, client hang-ups and a killed and
restarted cloud backend, against a real `vlrouter serve` on loopback; then every decision-log row is
matched to what the client saw.

What is expected while the cloud backend is down (from 1/3 to 2/3 of the run): auto-routed requests
that the router sends to the cloud fall back to the edge, so they are still 200 (their rows name
``fallback_from: cloud``); only requests forced to the cloud (``"model": "cloud"``) get 503
``backend_unavailable``, until the restarted backend answers and the breaker's 1 s cooldown lets them
through again. A stream that was on the cloud when it was killed ends with an in-band error (200,
``stream_error``). No other 5xx is expected. RSS and fd flatness are benchmark aims, not asserted here
beyond a generous bound on fds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "0.25",
                           "--concurrency", "4", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: an aim failed, not a crash
    assert "lost rows:" in proc.stdout
    return json.loads(out.read_text())


def test_soak_logs_one_row_per_request_and_survives_a_backend_outage(report):
    rows = report["rows"]
    assert rows["lost"] == [] and rows["duplicates"] == [] and rows["mismatched"] == []
    assert rows["unknown_rows"] == [] and rows["rows_for_refused"] == [] and rows["no_response"] == []
    assert rows["not_received"] == 0  # the gateway was up throughout: every request reached it
    assert rows["rows"] == rows["requests_reaching_gateway"] == report["requests"]
    assert report["verdicts"][0]["ok"]  # "no lost log rows"

    kinds = report["kinds"]
    assert all(k["sent"] > 0 for k in kinds.values()), {n: k["sent"] for n, k in kinds.items()}
    # hang-ups after the first chunk are logged as such; abandoned requests (no response) are logged too
    assert kinds["stream_disconnect"]["statuses"] == {"200/client_disconnected": kinds["stream_disconnect"]["sent"]}
    assert sum(rows["abandoned_rows"].values()) == kinds["abandoned"]["sent"]

    events = report["events"]
    assert events["cloud_killed"] is not None and events["cloud_restarted"] is not None
    assert events["cloud_ready"] is not None
    assert events["cloud_recovered"] is not None  # forced-cloud requests answered again after the restart
    assert rows["fallback_rows_cloud_to_edge"] > 0  # auto requests decided for the cloud fell back
    for kind in ("chat_auto", "chat_edge", "infer_multipart", "stream_full"):  # the edge never went down
        assert set(kinds[kind]["statuses"]) <= {"200", "200/stream_error"}, (kind, kinds[kind]["statuses"])
    assert set(kinds["chat_auto"]["statuses"]) == {"200"}
    assert set(report["five_xx"]) <= {"chat_cloud 503"}, report["five_xx"]
    for kind, k in kinds.items():
        assert k["unexpected"] == 0, (kind, k["statuses"], report["unexpected_by_outcome"])

    assert report["gateway_exit"] == 0  # SIGTERM: drained and flushed
    fds = report["fds"]
    assert fds["end"] <= fds["warmup_end"] + 30  # generous: no fd per request left behind


def test_soak_oversized_chunked_body_is_413(report):
    """A body over server.max_body_bytes sent without a Content-Length is a 413 too (FastAPI's body
    parsing used to turn the limit's error into a 400 on /v1/chat/completions)."""
    k = report["kinds"]["oversized_chunked"]
    assert k["sent"] > 0 and k["statuses"] == {"413": k["sent"]}
