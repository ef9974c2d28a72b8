"""Any OpenAI-compatible server (a cloud API, vLLM, llama.cpp server, ``vlrouter serve-model``).

One pooled ``aiohttp.ClientSession`` per backend (aiohttp's C HTTP parser on the event loop: on this
2-core VM a pooled httpx client capped a bare proxy near 300 req/s at 16 concurrent requests, aiohttp
near 1,700; see scripts/bench_gateway.py), with connect / read (first token) / total timeouts and
bodies encoded with orjson. Connect errors, connect timeouts, 429 and 5xx are retried with
exponential backoff (honouring ``Retry-After``) before any output has been produced; every transport
failure then becomes a backend error in one place, ``_backend_error``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from vlrouter.backends.base import (
    BackendError,
    BackendOverloaded,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    Generation,
    GenerationRequest,
    StreamDelta,
    usage_energy,
)
from vlrouter.config import OpenAIBackendConfig

log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}
# nothing reached the server: safe to resend
_RETRY_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_JSON = {"content-type": "application/json"}


class UpstreamStatus(Exception):
    """A non-2xx answer of the upstream after retries (mapped by ``_backend_error``)."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


def _error_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-shaped error body, else the start of the body."""
    try:
        err = orjson.loads(body).get("error", {})
        return err.get("message", "") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


def _backend_error(exc: BaseException, backend: str, during: str = "the request") -> BackendError:
    """The backend error for a transport failure; ``during`` says where it happened, for the message.

    ``UpstreamStatus`` (after retries): 429 -> ``BackendOverloaded``, 5xx -> ``BackendUnavailable``,
    any other status -> ``BackendRejected`` with 502 (our upstream refused: a bad gateway). Timeouts
    (aiohttp's connect / socket-read timeouts, the total deadline) -> ``BackendTimeout``; any other
    client error -> ``BackendUnavailable``.
    """
    if isinstance(exc, UpstreamStatus):
        message = f"backend {backend}: HTTP {exc.status} ({during}): {_error_message(exc.body)}"
        if exc.status == 429:
            return BackendOverloaded(message, backend=backend)
        if exc.status >= 500:
            return BackendUnavailable(message, backend=backend)
        return BackendRejected(message, backend=backend, status=502)
    detail = str(exc)
    message = f"backend {backend}: {type(exc).__name__} ({during})" + (f": {detail}" if detail else "")
    if isinstance(exc, TimeoutError):  # aiohttp.ServerTimeoutError is an asyncio.TimeoutError
        return BackendTimeout(message, backend=backend)
    return BackendUnavailable(message, backend=backend)


class OpenAIBackend:
    """An OpenAI-compatible HTTP server behind the ``Backend`` protocol.

    ``standin`` marks a local ``serve-model`` standing in for the cloud tier. The session is created
    on first use, inside the event loop that serves the requests.
    """

    kind = "openai"

    def __init__(self, name: str, config: OpenAIBackendConfig, *, standin: bool = False):
        self.name = name
        self.tier = config.tier
        self.config = config
        self.model = config.model
        self.standin = standin
        key = config.api_key.get_secret_value() if config.api_key else None
        if key is None and config.api_key_env:
            key = os.environ.get(config.api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._base = (config.base_url or "").rstrip("/")
        t = config.timeouts
        self._timeout = aiohttp.ClientTimeout(total=None, connect=t.connect_s, sock_connect=t.connect_s,
                                              sock_read=t.first_token_s)
        self._http: aiohttp.ClientSession | None = None
        self.trace_context: Callable[[], dict[str, str]] | None = None  # traceparent of the current span

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=300, keepalive_timeout=30)
            self._http = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout, connector=connector,
                                               read_bufsize=1 << 20, skip_auto_headers=("User-Agent",))
        return self._http

    async def start(self) -> None:
        self._session()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def health(self) -> bool:
        """Whether ``GET models`` answers 200 within about two seconds."""
        timeout = aiohttp.ClientTimeout(total=min(2.0, self.config.timeouts.connect_s + 1))
        try:
            async with self._session().get(f"{self._base}/models", timeout=timeout) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _payload(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        """The chat/completions body: text-only messages as strings, images as data URLs."""
        messages = []
        for m in request.messages:
            if all(isinstance(p, str) for p in m.parts):
                content: Any = "\n".join(m.parts)  # type: ignore[arg-type]
            else:
                content = [
                    {"type": "text", "text": p} if isinstance(p, str)
                    else {"type": "image_url", "image_url": {"url": p.data_url()}}
                    for p in m.parts
                ]
            messages.append({"role": m.role, "content": content})
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": request.max_tokens,
            "temperature": request.temperature, "stream": stream,
        }
        if request.temperature > 0 and request.top_p < 1:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @asynccontextmanager
    async def _send(self, body: dict[str, Any]):
        """POST chat/completions with retries; yields a response with a 2xx status, unread."""
        try:
            data = orjson.dumps(body)
        except TypeError as exc:  # e.g. an integer past 64 bits: the request's fault, not the backend's
            raise BackendRejected(f"backend {self.name}: request cannot be encoded: {exc}", backend=self.name,
                                  status=400) from exc
        url, attempt = f"{self._base}/chat/completions", 0
        headers = _JSON if self.trace_context is None else {**_JSON, **self.trace_context()}
        while True:
            try:
                resp = await self._session().post(url, data=data, headers=headers)
            except _RETRY_ERRORS as exc:
                if attempt < self.config.max_retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, None))
                    continue
                raise _backend_error(exc, self.name, f"connecting, {attempt + 1} attempt(s)") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:  # e.g. no response within first_token_s
                raise _backend_error(exc, self.name, "awaiting the response") from exc
            if resp.status < 300:
                try:
                    yield resp
                finally:
                    resp.release()
                return
            try:
                raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _backend_error(exc, self.name, "reading an error response") from exc
            finally:
                resp.release()
            if resp.status in _RETRY_STATUS and attempt < self.config.max_retries:
                attempt += 1
                await asyncio.sleep(self._backoff(attempt, resp.headers.get("retry-after")))
                continue
            raise _backend_error(UpstreamStatus(resp.status, raw), self.name, f"{attempt + 1} attempt(s)")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds before retry ``attempt``: ``Retry-After`` (at most 10 s), else jittered exponential."""
        if retry_after:
            try:
                return min(float(retry_after), 10.0)
            except ValueError:
                pass
        base = self.config.backoff_s * 2 ** (attempt - 1)
        return base * (0.5 + random.random())

    async def generate(self, request: GenerationRequest) -> Generation:
        """One non-streamed completion (``first_token_at`` is when the whole answer arrived)."""
        try:
            async with asyncio.timeout(self.config.timeouts.total_s):
                async with self._send(self._payload(request, stream=False)) as resp:
                    raw = await resp.read()
        except BackendError:
            raise
        except aiohttp.ClientError as exc:  # its timeouts included (ServerTimeoutError)
            raise _backend_error(exc, self.name, "reading the response") from exc
        except TimeoutError as exc:
            raise _backend_error(exc, self.name, f"{self.config.timeouts.total_s:g} s for the whole request") from exc
        done = time.perf_counter()
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return Generation(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                first_token_at=done,  # non-streamed: the first token arrives with the last
                energy=usage_energy(usage),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendUnavailable(f"backend {self.name}: malformed response: {exc!r}", backend=self.name) from exc

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Server-sent deltas passed through; an in-band ``{"error": ...}`` chunk is ``BackendUnavailable``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.total_s
        finish, usage = None, {}
        try:
            async with self._send(self._payload(request, stream=True)) as resp:
                async for line in resp.content:
                    if loop.time() > deadline:
                        raise _backend_error(TimeoutError(), self.name, "streaming")
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    try:
                        chunk = orjson.loads(data)
                    except ValueError as exc:
                        raise BackendUnavailable(f"backend {self.name}: bad SSE data", backend=self.name) from exc
                    if "error" in chunk:  # the upstream failed mid-stream (vLLM, serve-model)
                        raise BackendUnavailable(f"backend {self.name}: error in stream: {_error_message(data)}",
                                                 backend=self.name)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield StreamDelta(text=text)
                        finish = choice.get("finish_reason") or finish
        except aiohttp.ClientError as exc:  # its timeouts included (ServerTimeoutError)
            raise _backend_error(exc, self.name, "streaming") from exc
        yield StreamDelta(
            finish_reason=finish or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            energy=usage_energy(usage),
        )
