"""Dispatch to a chain of backends: circuit breakers and one fallback before the first token.

The chain is the chosen backend followed by (at most) one backend of the other tier. A backend whose
circuit is open is skipped without a network round trip. Only ``BackendUnavailable`` (timeouts,
refused connections, 5xx, 429) moves on down the chain; once a stream has produced its first
token the response is committed to that backend. When the whole chain fails, ``AllBackendsFailed``
(503 ``backend_unavailable``) carries what each backend said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from vlrouter.backends.base import (
    Backend,
    BackendOverloaded,
    BackendUnavailable,
    Generation,
    GenerationRequest,
    StreamDelta,
)
from vlrouter.config import AdmissionConfig, CircuitConfig


class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``cooldown_s``."""

    def __init__(self, config: CircuitConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.config.cooldown_s else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.failures, self.opened_at = 0, None

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self.config.failures or self.state == "half-open":
            self.opened_at = self.clock()


@dataclass
class Attempts:
    """What happened on the way down the chain (for headers, logs and metrics)."""

    failed: list[tuple[str, str]] = field(default_factory=list)  # (backend name, error)
    busy: list[str] = field(default_factory=list)  # backends skipped because their admission was full

    @property
    def fell_back(self) -> bool:
        return bool(self.failed)


class BackendBusy(BackendOverloaded):
    """The backend's in-flight limit and queue are full (``admission``): not a failure of the backend."""


class AllBackendsFailed(BackendUnavailable):
    """No backend of the chain answered (each failed or had its circuit open): 503 ``backend_unavailable``;
    429 ``backend_busy`` with ``Retry-After`` when every one of them was only busy."""

    status = 503
    code = "backend_unavailable"

    def __init__(self, attempts: Attempts, retry_after_s: int | None = None):
        detail = "; ".join(f"{name}: {err}" for name, err in attempts.failed)
        super().__init__(f"no backend could answer ({detail})")
        self.attempts = attempts
        self.headers = None
        if retry_after_s is not None:
            self.status, self.code, self.headers = 429, "backend_busy", {"Retry-After": str(retry_after_s)}


class Admission:
    """A bounded in-flight limit with a bounded queue in front of it, for one backend."""

    def __init__(self, config: AdmissionConfig, name: str):
        self.config, self.name = config, name
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self.waiting = 0

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room in it; ``BackendBusy`` otherwise."""
        if self._slots.locked() and self.waiting >= self.config.max_queue:
            raise BackendBusy(f"backend {self.name}: busy ({self.config.max_in_flight} in flight, "
                              f"{self.waiting} queued)", backend=self.name)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()


class Dispatcher:
    """Runs a request down a chain of backend names, minding each backend's circuit breaker."""

    def __init__(self, backends: dict[str, Backend], breakers: dict[str, CircuitBreaker],
                 admissions: dict[str, Admission] | None = None):
        self.backends = backends
        self.breakers = breakers
        self.admissions = admissions or {}

    def _failed(self, attempts: Attempts) -> AllBackendsFailed:
        waits = [self.admissions[n].config.retry_after_s for n in attempts.busy]
        return AllBackendsFailed(attempts, max(waits) if waits and len(waits) == len(attempts.failed) else None)

    async def _admit(self, name: str, attempts: Attempts) -> bool:
        admission = self.admissions.get(name)
        if admission is None:
            return True
        try:
            await admission.acquire()
        except BackendBusy as exc:  # not the backend's fault: the circuit stays as it is
            attempts.failed.append((name, str(exc)))
            attempts.busy.append(name)
            return False
        return True

    def _release(self, name: str) -> None:
        if name in self.admissions:
            self.admissions[name].release()

    def _usable(self, name: str, attempts: Attempts) -> Backend | None:
        """The backend, or None (noted in ``attempts``) while its circuit is open."""
        if not self.breakers[name].allow():
            attempts.failed.append((name, "circuit open"))
            return None
        return self.backends[name]

    async def generate(self, chain: list[str], request: GenerationRequest) -> tuple[Generation, Backend, Attempts]:
        """The first answer down the chain, the backend that gave it and the failures before it."""
        attempts = Attempts()
        for name in chain:
            backend = self._usable(name, attempts)
            if backend is None or not await self._admit(name, attempts):
                continue
            try:
                result = await backend.generate(request)
            except BackendUnavailable as exc:
                self.breakers[name].record_failure()
                attempts.failed.append((name, str(exc)))
                continue
            finally:
                self._release(name)
            self.breakers[name].record_success()
            return result, backend, attempts
        raise self._failed(attempts)

    async def open_stream(
        self, chain: list[str], request: GenerationRequest
    ) -> tuple[Backend, AsyncIterator[StreamDelta], Attempts]:
        """A stream that has already produced its first delta (replayed first), so a failure before
        the first token can still fall back; with the backend that gives it and the failures before it."""
        attempts = Attempts()
        for name in chain:
            backend = self._usable(name, attempts)
            if backend is None or not await self._admit(name, attempts):
                continue
            stream = backend.stream(request)
            try:
                first = await anext(stream)
            except BackendUnavailable as exc:
                await stream.aclose()
                self._release(name)
                self.breakers[name].record_failure()
                attempts.failed.append((name, str(exc)))
                continue
            except StopAsyncIteration:
                first = StreamDelta(finish_reason="stop", prompt_tokens=0, completion_tokens=0)
            except BaseException:
                self._release(name)
                raise
            self.breakers[name].record_success()
            return backend, _Replay(first, stream, lambda n=name: self._release(n)), attempts
        raise self._failed(attempts)


class _Replay:
    """``first`` and then the rest of a stream. ``aclose`` closes the stream and gives its admission
    slot back exactly once, whether or not the consumer started iterating."""

    def __init__(self, first: StreamDelta, rest: AsyncIterator[StreamDelta], done: Callable[[], None]):
        self._first: StreamDelta | None = first
        self._rest, self._done, self._closed = rest, done, False

    def __aiter__(self) -> _Replay:
        return self

    async def __anext__(self) -> StreamDelta:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._rest.aclose()  # type: ignore[attr-defined]
        finally:
            self._done()
