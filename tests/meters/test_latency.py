"""Latency terms in vLLM's sense."""

from __future__ import annotations

import pytest

from vlrouter.meters.latency import measure


def test_tpot_excludes_the_first_token():
    lat = measure(started=10.0, route_s=0.01, first_token_at=10.5, ended=12.5, queue_s=0.2,
                  prompt_tokens=30, completion_tokens=21)
    assert lat.ttft_s == pytest.approx(0.5) and lat.e2e_s == pytest.approx(2.5)
    assert lat.tpot_s == pytest.approx(2.0 / 20)
    assert lat.output_tokens_per_s == pytest.approx(21 / 2.5)
    assert lat.as_ms() == {"queue_ms": 200.0, "route_ms": 10.0, "ttft_ms": 500.0, "tpot_ms": 100.0,
                           "e2e_ms": 2500.0, "tokens_per_s": 8.4}


def test_single_token_and_no_token_answers():
    one = measure(started=0.0, route_s=0.0, first_token_at=0.3, ended=0.3, completion_tokens=1)
    assert one.tpot_s is None and one.ttft_s == pytest.approx(0.3)
    none = measure(started=0.0, route_s=0.0, ended=0.1)
    assert none.ttft_s is None and none.tpot_s is None and none.output_tokens_per_s is None
