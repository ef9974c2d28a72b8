"""Dispatch to a chain of backends: circuit breakers and one fallback before the first token.

The chain is the chosen backend followed by (at most) one backend of the other tier. A backend whose
circuit is open is skipped without a network round trip. Only ``BackendUnavailable`` (timeouts,
refused connections, 5xx, 429) moves on down the chain; once a stream has produced its first
token the response is committed to that backend. When the whole chain fails, ``AllBackendsFailed``
(503 ``backend_unavailable``) carries what each backend said.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from vlrouter.backends.base import Backend, BackendUnavailable, Generation, GenerationRequest, StreamDelta
from vlrouter.config import CircuitConfig


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

    @property
    def fell_back(self) -> bool:
        return bool(self.failed)


class AllBackendsFailed(BackendUnavailable):
    """No backend of the chain answered (each failed or had its circuit open): 503 ``backend_unavailable``."""

    status = 503
    code = "backend_unavailable"

    def __init__(self, attempts: Attempts):
        detail = "; ".join(f"{name}: {err}" for name, err in attempts.failed)
        super().__init__(f"no backend could answer ({detail})")
        self.attempts = attempts


class Dispatcher:
    """Runs a request down a chain of backend names, minding each backend's circuit breaker."""

    def __init__(self, backends: dict[str, Backend], breakers: dict[str, CircuitBreaker]):
        self.backends = backends
        self.breakers = breakers

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
            if backend is None:
                continue
            try:
                result = await backend.generate(request)
            except BackendUnavailable as exc:
                self.breakers[name].record_failure()
                attempts.failed.append((name, str(exc)))
                continue
            self.breakers[name].record_success()
            return result, backend, attempts
        raise AllBackendsFailed(attempts)

    async def open_stream(
        self, chain: list[str], request: GenerationRequest
    ) -> tuple[Backend, AsyncIterator[StreamDelta], Attempts]:
        """A stream that has already produced its first delta (replayed first), so a failure before
        the first token can still fall back; with the backend that gives it and the failures before it."""
        attempts = Attempts()
        for name in chain:
            backend = self._usable(name, attempts)
            if backend is None:
                continue
            stream = backend.stream(request)
            try:
                first = await anext(stream)
            except BackendUnavailable as exc:
                await stream.aclose()
                self.breakers[name].record_failure()
                attempts.failed.append((name, str(exc)))
                continue
            except StopAsyncIteration:
                first = StreamDelta(finish_reason="stop", prompt_tokens=0, completion_tokens=0)
            self.breakers[name].record_success()
            return backend, _replay(first, stream), attempts
        raise AllBackendsFailed(attempts)


async def _replay(first: StreamDelta, rest: AsyncIterator[StreamDelta]) -> AsyncIterator[StreamDelta]:
    """``first`` and then the rest of the stream, closing the stream however the consumer stops."""
    try:
        yield first
        async for delta in rest:
            yield delta
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
