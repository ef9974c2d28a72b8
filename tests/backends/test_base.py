from __future__ import annotations

import asyncio

import pytest

from vlrouter.backends import build_backend
from vlrouter.backends.base import (
    Backend,
    BackendError,
    BackendOverloaded,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    StopTrimmer,
)
from vlrouter.backends.fallback import AllBackendsFailed, Attempts, CircuitBreaker
from vlrouter.config import CircuitConfig, LocalBackendConfig, OpenAIBackendConfig
from vlrouter.errors import VLRouterError
from vlrouter.meters.energy import EnergyLedger


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


@pytest.mark.parametrize("cls", [BackendError, BackendUnavailable, BackendTimeout, BackendOverloaded])
def test_backend_errors_are_project_errors(cls):
    err = cls("backend b: down", backend="b")
    assert isinstance(err, VLRouterError)
    assert (err.status, err.code, err.param, err.backend, err.message) == (
        503, "backend_unavailable", None, "b", "backend b: down")


def test_rejections_and_exhausted_chains_carry_their_status():
    assert (BackendRejected("no").status, BackendRejected("no").code) == (400, "backend_rejected")
    rejected = BackendRejected("upstream said no", backend="cloud", status=502)
    assert (rejected.status, rejected.code, rejected.backend) == (502, "backend_rejected", "cloud")
    failed = AllBackendsFailed(Attempts(failed=[("edge", "circuit open"), ("cloud", "HTTP 503")]))
    assert isinstance(failed, BackendUnavailable) and (failed.status, failed.code) == (503, "backend_unavailable")
    assert "edge: circuit open; cloud: HTTP 503" in failed.message


def test_backends_declare_their_kind_and_metering(tmp_path):
    ledger = EnergyLedger(lambda: 0.0, "estimate")
    local = LocalBackendConfig(kind="local", tier="edge", model_path=tmp_path)
    remote = OpenAIBackendConfig(kind="openai", tier="cloud", base_url="http://cloud.test/v1", model="m")
    metered, plain = build_backend("edge", local, energy=ledger), build_backend("edge", local)
    cloud = build_backend("cloud", remote, standin=True, energy=ledger)  # a remote backend ignores the ledger
    try:
        assert all(isinstance(b, Backend) for b in (metered, plain, cloud))
        assert (metered.kind, metered.energy) == ("local", ledger)
        assert (plain.kind, plain.energy) == ("local", None)
        assert (cloud.kind, cloud.standin, cloud.tier) == ("openai", True, "cloud")
    finally:
        for b in (metered, plain, cloud):
            asyncio.run(b.aclose())
