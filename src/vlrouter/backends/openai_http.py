"""Any OpenAI-compatible server (a cloud API, vLLM, llama.cpp server, ``vlrouter serve-model``).

One ``httpx.AsyncClient`` per backend with connect / read (first token) / total timeouts. Connect
errors, 429 and 5xx are retried with exponential backoff (honouring ``Retry-After``) before any
output has been produced; then they are translated into the backend error tree.
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


def _error_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error", {})
        return err.get("message", "") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


class OpenAIBackend:
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
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        t = config.timeouts
        self._client = httpx.AsyncClient(
            base_url=(config.base_url or "").rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(connect=t.connect_s, read=t.first_token_s, write=t.connect_s, pool=t.connect_s),
        )

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        await self._client.aclose()

    async def health(self) -> bool:
        try:
            resp = await self._client.get("models", timeout=min(2.0, self.config.timeouts.connect_s + 1))
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    def _payload(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
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
            except httpx.TimeoutException as exc:
                if attempt < self.config.max_retries and isinstance(exc, httpx.ConnectTimeout):
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, None))
                    continue
                raise BackendTimeout(f"backend {self.name}: {type(exc).__name__}", backend=self.name) from exc
            except httpx.TransportError as exc:
                if attempt < self.config.max_retries and isinstance(exc, httpx.ConnectError):
                    attempt += 1
                    await asyncio.sleep(self._backoff(attempt, None))
                    continue
                raise BackendUnavailable(f"backend {self.name}: {type(exc).__name__}: {exc}",
                                         backend=self.name) from exc
            if resp.status_code < 300:
                try:
                    yield resp
                finally:
                    await resp.aclose()
                return
            raw = await resp.aread()
            await resp.aclose()
            message = f"backend {self.name}: HTTP {resp.status_code}: {_error_message(raw)}"
            if resp.status_code in _RETRY_STATUS and attempt < self.config.max_retries:
                attempt += 1
                await asyncio.sleep(self._backoff(attempt, resp.headers.get("retry-after")))
                continue
            if resp.status_code == 429:
                raise BackendOverloaded(message, backend=self.name)
            if resp.status_code >= 500:
                raise BackendUnavailable(message, backend=self.name)
            raise BackendRejected(message, backend=self.name, status=502)  # our upstream refused: a bad gateway

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 10.0)
            except ValueError:
                pass
        base = self.config.backoff_s * 2 ** (attempt - 1)
        return base * (0.5 + random.random())

    async def generate(self, request: GenerationRequest) -> Generation:
        try:
            async with asyncio.timeout(self.config.timeouts.total_s):
                async with self._send(self._payload(request, stream=False)) as resp:
                    raw = await resp.aread()
        except TimeoutError as exc:
            raise BackendTimeout(f"backend {self.name}: total timeout", backend=self.name) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"backend {self.name}: read timeout", backend=self.name) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"backend {self.name}: {exc!r}", backend=self.name) from exc
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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.total_s
        finish, usage = None, {}
        try:
            async with self._send(self._payload(request, stream=True)) as resp:
                async for line in resp.aiter_lines():
                    if loop.time() > deadline:
                        raise BackendTimeout(f"backend {self.name}: total timeout", backend=self.name)
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise BackendUnavailable(f"backend {self.name}: bad SSE data", backend=self.name) from exc
                    if "error" in chunk:
                        raise BackendUnavailable(f"backend {self.name}: {chunk['error']}", backend=self.name)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield StreamDelta(text=text)
                        finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException as exc:
            raise BackendTimeout(f"backend {self.name}: read timeout", backend=self.name) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"backend {self.name}: {exc!r}", backend=self.name) from exc
        yield StreamDelta(
            finish_reason=finish or "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            energy=usage_energy(usage),
        )
