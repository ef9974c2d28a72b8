"""POST /v1/feedback: attach a score to a logged request."""

from __future__ import annotations

import httpx
import openai

from tests.api.test_errors import assert_error
from vlrouter.telemetry.decision_log import read_rows


def test_feedback_round_trip_through_the_log(make_gateway, tmp_path):
    db = tmp_path / "fb.db"
    with make_gateway(None, log={"enabled": True, "path": str(db)}) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        answered = http.post("/infer", json={"text": "hi", "max_tokens": 1})
        rid = answered.json()["request_id"]
        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused")
        completion = sdk.chat.completions.create(model="vlrouter-auto", max_tokens=1,
                                                 messages=[{"role": "user", "content": "hello"}])
        # feedback right away: the row may still be queued for the writer thread
        ok = http.post("/v1/feedback", json={"request_id": rid, "score": 0.25})
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"object": "feedback", "request_id": rid, "score": 0.25, "recorded": True}
        # the completion id works too, and a later score replaces an earlier one
        assert http.post("/v1/feedback", json={"request_id": completion.id, "score": 0.0}).status_code == 200
        assert http.post("/v1/feedback", json={"request_id": completion.id, "score": 1.0}).status_code == 200

        assert_error(http.post("/v1/feedback", json={"request_id": "req-nope", "score": 1}), 404,
                     "request_not_found")
        assert_error(http.post("/v1/feedback", json={"request_id": rid, "score": 1.5}), 400)
        assert_error(http.post("/v1/feedback", json={"score": 1}), 400)
        assert_error(http.post("/v1/feedback", content=b"{", headers={"content-type": "application/json"}), 400)
    rows = {r["request_id"]: r for r in read_rows(db)}
    assert len(rows) == 2  # feedback calls are not decisions
    assert rows[rid]["feedback_score"] == 0.25
    assert rows[completion.id.removeprefix("chatcmpl-")]["feedback_score"] == 1.0


def test_feedback_without_a_log_is_refused(make_gateway):
    with make_gateway(None) as gw:
        resp = httpx.post(gw.url + "/v1/feedback", json={"request_id": "req-1", "score": 1}, timeout=30)
    assert_error(resp, 409, "log_disabled")
