"""Any OpenAI-compatible server (a cloud API, vLLM, llama.cpp server, ``vlrouter serve-model``).

One ``httpx.AsyncClient`` per backend with connect / read (first token) / total timeouts. Connect
errors, connect timeouts, 429 and 5xx are retried with exponential backoff (honouring
``Retry-After``) before any output has been produced; every httpx failure then becomes a backend
error in one place, ``_backend_error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

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
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)  # nothing reached the server: safe to resend


def _error_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-shaped error body, else the start of the body."""
    try:
        err = json.loads(body).get("error", {})
        return err.get("message", "") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


def _backend_error(exc: httpx.HTTPError | TimeoutError, backend: str, during: str = "the request") -> BackendError:
    """The backend error for an httpx failure (or the ``TimeoutError`` of the total deadline);
    ``during`` says where it happened, for the message.

    ``HTTPStatusError`` (after retries): 429 -> ``BackendOverloaded``, 5xx -> ``BackendUnavailable``,
    any other status -> ``BackendRejected`` with 502 (our upstream refused: a bad gateway). Timeouts ->
    ``BackendTimeout``; any other transport error -> ``BackendUnavailable``.
    """
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        message = f"backend {backend}: HTTP {status} ({during}): {_error_message(exc.response.content)}"
        if status == 429:
            return BackendOverloaded(message, backend=backend)
        if status >= 500:
            return BackendUnavailable(message, backend=backend)
        return BackendRejected(message, backend=backend, status=502)
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"backend {backend}: total timeout ({during})", backend=backend)
    message = f"backend {backend}: {type(exc).__name__} ({during})" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(message, backend=backend)
    return BackendUnavailable(message, backend=backend)


class OpenAIBackend:
    """An OpenAI-compatible HTTP server behind the ``Backend`` protocol.

    ``standin`` marks a local ``serve-model`` standing in for the cloud tier; ``transport`` replaces
    httpx's network transport (tests inject ``httpx.MockTransport``).
    """

    kind = "openai"
    metered = False  # energy is what the server reports in ``usage`` (a remote vlrouter) or estimated

    def __init__(self, name: str, config: OpenAIBackendConfig, *, standin: bool = False,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.name = name
        self.tier = config.tier
        self.config = config
        self.model = config.model
        self.standin = standin
        key = config.api_key.get_secret_value() if config.api_key else None
        if key is None and config.api_key_env:
            key = os.environ.get(config.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        t = config.timeouts
        self._client = httpx.AsyncClient(
            base_url=(config.base_url or "").rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(connect=t.connect_s, read=t.first_token_s, write=t.connect_s, pool=t.connect_s),
            transport=transport,
        )

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def health(self) -> bool:
        """Whether ``GET models`` answers 200 within about two seconds."""
        try:
            resp = await self._client.get("models", timeout=min(2.0, self.config.timeouts.connect_s + 1))
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

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
        attempt = 0
        while True:
            try:
                req = self._client.build_request("POST", "chat/completions", json=body)
                resp = await self._client.send(req, stream=True)
            except _RETRY_ERRORS as exc:
                if attempt < self.config.max_retries:
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, None))
                    continue
                raise _backend_error(exc, self.name, f"connecting, {attempt + 1} attempt(s)") from exc
            except httpx.HTTPError as exc:  # e.g. no response headers within first_token_s: not resent
                raise _backend_error(exc, self.name, "awaiting the response") from exc
            if resp.status_code < 300:
                try:
                    yield resp
                finally:
                    await resp.aclose()
                return
            await resp.aread()
            await resp.aclose()
            if resp.status_code in _RETRY_STATUS and attempt < self.config.max_retries:
                attempt += 1
                await asyncio.sleep(self._backoff(attempt, resp.headers.get("retry-after")))
                continue
            error = httpx.HTTPStatusError(f"HTTP {resp.status_code}", request=req, response=resp)
            raise _backend_error(error, self.name, f"{attempt + 1} attempt(s)")

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
                    raw = await resp.aread()
        except TimeoutError as exc:
            raise _backend_error(exc, self.name, f"{self.config.timeouts.total_s:g} s for the whole request") from exc
        except httpx.HTTPError as exc:
            raise _backend_error(exc, self.name, "reading the response") from exc
        done = time.perf_counter()
        try:
            data = json.loads(raw)
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
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendUnavailable(f"backend {self.name}: malformed response: {exc!r}", backend=self.name) from exc

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Server-sent deltas passed through; an in-band ``{"error": ...}`` chunk is ``BackendUnavailable``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.total_s
        finish, usage = None, {}
        try:
            async with self._send(self._payload(request, stream=True)) as resp:
                async for line in resp.aiter_lines():
                    if loop.time() > deadline:
                        raise _backend_error(TimeoutError(), self.name, "streaming")
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise BackendUnavailable(f"backend {self.name}: bad SSE data", backend=self.name) from exc
                    if "error" in chunk:  # the upstream failed mid-stream (vLLM, serve-model)
                        raise BackendUnavailable(f"backend {self.name}: error in stream: "
                                                 f"{_error_message(data.encode())}", backend=self.name)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield StreamDelta(text=text)
                        finish = choice.get("finish_reason") or finish
        except httpx.HTTPError as exc:
            raise _backend_error(exc, self.name, "streaming") from exc
        yield StreamDelta(
            finish_reason=finish or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            energy=usage_energy(usage),
        )
