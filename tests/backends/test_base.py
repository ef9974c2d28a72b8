from __future__ import annotations

import pytest

from vlrouter.backends.base import StopTrimmer
from vlrouter.backends.fallback import CircuitBreaker
from vlrouter.config import CircuitConfig


@pytest.mark.parametrize(
    ("pieces", "stops", "expected", "stopped"),
    [
        (["Hello wor", "ld. END here"], ["END"], "Hello world. ", True),
        (["ab", "cE", "ND"], ["END"], "abc", True),
        (["no stop ", "at all"], ["END"], "no stop at all", False),
        (["x", "y"], [], "xy", False),
        (["EN", "D"], ["END", "N"], "", True),
        (["aEN", "x"], ["END", "N"], "aE", True),
        (["ab"], ["b", "abc"], "a", True),
    ],
)
def test_stop_trimmer(pieces, stops, expected, stopped):
    trimmer = StopTrimmer(stops)
    out = "".join(trimmer.feed(p) for p in pieces) + trimmer.flush()
    assert (out, trimmer.stopped) == (expected, stopped)
    whole = StopTrimmer(stops)  # the same text in one piece gives the same result
    assert (whole.feed("".join(pieces)) + whole.flush(), whole.stopped) == (expected, stopped)


def test_circuit_breaker_opens_and_half_opens():
    now = [0.0]
    breaker = CircuitBreaker(CircuitConfig(failures=2, cooldown_s=10), clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.5
    assert breaker.state == "half-open" and breaker.allow()
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == "open"
    now[0] = 21
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0
