"""The ``Backend`` protocol (generate / stream / health) and the backend error tree.

Backend errors are ``VLRouterError`` s (``vlrouter.errors``): the API shapes them from their
``status`` and ``code``. Each backend translates its own failures at the boundary
(``raise BackendTimeout(...) from exc``)::

    VLRouterError
     └── BackendError               503 backend_unavailable
          ├── BackendUnavailable    refused connection, 5xx, bad response, model crashed -> fallback
          │    ├── BackendTimeout     connect / first-token / total deadline              -> fallback
          │    ├── BackendOverloaded  429 after retries                                   -> fallback
          │    └── AllBackendsFailed  (fallback) no backend of the chain answered, or circuits open
          └── BackendRejected       backend_rejected: the backend refused this request    -> no fallback
                                    (400 from a local model, 502 when an upstream answered 4xx)

Fallback catches ``BackendUnavailable`` only: a request the other tier would refuse just as well
is not retried there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from vlrouter.errors import VLRouterError
from vlrouter.media import DecodedImage
from vlrouter.meters.energy import EnergyReading


class BackendError(VLRouterError):
    """A backend could not answer; ``backend`` names it (empty where no single backend is to blame)."""

    status = 503
    code = "backend_unavailable"

    def __init__(self, message: str, *, backend: str = ""):
        super().__init__(message)
        self.backend = backend


class BackendUnavailable(BackendError):
    """The backend is down, failing or answered nonsense: another tier may answer instead."""


class BackendTimeout(BackendUnavailable):
    """A connect, first-token or total deadline passed."""


class BackendOverloaded(BackendUnavailable):
    """The backend kept answering 429 (rate limited) through all retries."""


class BackendRejected(BackendError):
    """The backend refused this very request; ``status`` is what the client gets (no fallback)."""

    status = 400
    code = "backend_rejected"

    def __init__(self, message: str, *, backend: str = "", status: int = 400):
        super().__init__(message, backend=backend)
        self.status = status


@dataclass
class Message:
    """One chat message: role and ordered parts (``str`` for text, ``DecodedImage`` for images)."""

    role: str
    parts: list[str | DecodedImage]

    @property
    def text(self) -> str:
        return "\n".join(p for p in self.parts if isinstance(p, str))

    @property
    def images(self) -> list[DecodedImage]:
        return [p for p in self.parts if isinstance(p, DecodedImage)]


@dataclass
class GenerationRequest:
    """What every backend is asked: the chat, already decoded, and the sampling parameters."""

    messages: list[Message]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    request_id: str = ""

    @property
    def images(self) -> list[DecodedImage]:
        return [img for m in self.messages for img in m.images]

    @property
    def text(self) -> str:
        return "\n".join(m.text for m in self.messages if m.text)


@dataclass
class Generation:
    """A finished answer with its token counts, timing and (where known) energy."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    first_token_at: float | None = None  # time.perf_counter() when the first text arrived
    queue_s: float | None = None  # waiting for a local worker
    energy: EnergyReading | None = None  # measured by the backend (or reported by a remote vlrouter)

    @classmethod
    def from_final(cls, final: StreamDelta, text: str = "", first_token_at: float | None = None) -> Generation:
        """A stream's outcome from its last delta (token counts, queue time, energy)."""
        return cls(text=text, finish_reason=final.finish_reason, prompt_tokens=final.prompt_tokens or 0,
                   completion_tokens=final.completion_tokens or 0, first_token_at=first_token_at,
                   queue_s=final.queue_s, energy=final.energy)


@dataclass
class StreamDelta:
    """A piece of streamed output; the last one has ``finish_reason``, the token counts and energy."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    queue_s: float | None = None
    energy: EnergyReading | None = None


async def collect(stream: AsyncIterator[StreamDelta]) -> Generation:
    """A stream gathered into one ``Generation`` (the non-streamed path of streaming backends)."""
    import time

    pieces, first, final = [], None, StreamDelta()
    async for delta in stream:
        if delta.text:
            if first is None:
                first = time.perf_counter()
            pieces.append(delta.text)
        if delta.finish_reason:
            final = delta
    return Generation.from_final(final, "".join(pieces), first)


def usage_energy(usage: dict) -> EnergyReading | None:
    """Energy a remote vlrouter model server reported in ``usage`` (``energy_j``, ``energy_source``)."""
    from vlrouter.meters.energy import SOURCES

    joules, source = usage.get("energy_j"), usage.get("energy_source")
    if not isinstance(joules, int | float) or source not in SOURCES or joules < 0:
        return None
    attribution = usage.get("energy_attribution")
    return EnergyReading(float(joules), source, attribution if attribution in ("exclusive", "apportioned")
                         else "exclusive")


@runtime_checkable
class Backend(Protocol):
    """What the gateway needs of a model: identity, lifecycle, generate / stream and a health probe.

    Energy: a local backend given a ledger measures its generations, a remote vlrouter reports them;
    either way they arrive on ``Generation.energy``, and the gateway estimates the rest by ``kind``.
    """

    name: str
    tier: str  # "edge" | "cloud"
    kind: str  # "local" (in-process model) | "openai" (an OpenAI-compatible HTTP server)
    model: str  # the model name reported to clients

    async def start(self) -> None: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]: ...

    async def health(self) -> bool: ...

    async def aclose(self) -> None: ...


class StopTrimmer:
    """Cut streamed text at the earliest-starting stop sequence, as OpenAI does.

    Text that might be the start of a stop sequence is held back until it is decided; a complete
    match is only acted on once no longer stop sequence could still complete at an earlier start.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.stopped = False

    def _earliest_match(self) -> int:
        return min((i for i in (self.buffer.find(s) for s in self.stops) if i >= 0), default=-1)

    def _earliest_partial(self) -> int:
        """Start of the earliest buffer suffix that is a proper prefix of some stop sequence."""
        n = len(self.buffer)
        for j in range(max(0, n - max((len(s) for s in self.stops), default=0) + 1), n):
            tail = self.buffer[j:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self.stops):
                return j
        return n

    def feed(self, text: str) -> str:
        """The part of the text so far that is sure to be output (nothing once stopped)."""
        if self.stopped:
            return ""
        self.buffer += text
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out
        cut, partial = self._earliest_match(), self._earliest_partial()
        if cut >= 0 and cut <= partial:
            out, self.buffer, self.stopped = self.buffer[:cut], "", True
            return out
        safe = min(partial, cut) if cut >= 0 else partial
        out, self.buffer = self.buffer[:safe], self.buffer[safe:]
        return out

    def flush(self) -> str:
        """At the end of the stream: the held-back text, cut at a stop sequence if one completed."""
        if self.stopped:
            return ""
        cut = self._earliest_match()
        out = self.buffer[:cut] if cut >= 0 else self.buffer
        self.stopped = cut >= 0
        self.buffer = ""
        return out
