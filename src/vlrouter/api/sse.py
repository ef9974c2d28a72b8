"""Server-sent events for streamed chat completions: OpenAI's chunk framing of a ``Relay``.

Framing only: the relay records the request when ``close`` is called, however the stream ends. An
error after the headers have gone is reported in-band as OpenAI does (an ``error`` event, then
``[DONE]``), in the same error shape as every other error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from fastapi.responses import StreamingResponse

from vlrouter.api.errors import as_error, error_payload
from vlrouter.api.pipeline import Relay
from vlrouter.api.responses import finish_reason, routing_headers, usage_dict
from vlrouter.errors import VLRouterError

DONE = b"data: [DONE]\n\n"


class ChunkFramer:
    """``chat.completion.chunk`` events for one stream (protocol.ChatCompletionChunk's shape). The
    envelope is encoded once; each text delta costs one orjson call, not a model build and dump."""

    def __init__(self, request_id: str, model: str):
        envelope = orjson.dumps({"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
                                 "created": int(time.time()), "model": model})
        self._head = b"data: " + envelope[:-1] + b',"choices":'  # the envelope without its closing brace

    def event(self, choices: list, usage: dict | None = None) -> bytes:
        tail = b"" if usage is None else b',"usage":' + orjson.dumps(usage)
        return self._head + orjson.dumps(choices) + tail + b"}\n\n"

    def text(self, text: str) -> bytes:
        return self._head + b'[{"index":0,"delta":{"content":' + orjson.dumps(text) + b"}}]}\n\n"


async def chat_events(relay: Relay) -> AsyncIterator[bytes]:
    """The chunks of one streamed completion: role, text deltas, finish, optional usage, ``[DONE]``."""
    query = relay.routed.query
    frame = ChunkFramer(query.request_id, relay.backend.model)
    error: VLRouterError | None = None
    try:
        yield frame.event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])
        async for text in relay.texts():
            yield frame.text(text)
        yield frame.event([{"index": 0, "delta": {}, "finish_reason": finish_reason(relay.final.finish_reason)}])
        if query.include_usage:
            result, energy = relay.outcome()
            yield frame.event([], usage_dict(result.prompt_tokens, result.completion_tokens, energy))
        yield DONE
    except Exception as exc:  # after the headers: report in-band
        error = as_error(exc)
        yield b"data: " + orjson.dumps(error_payload(error)) + b"\n\n"
        yield DONE
    finally:
        await relay.close(error)


def chat_stream(relay: Relay) -> StreamingResponse:
    """The SSE response for a relay, with the routing headers."""
    headers = routing_headers(relay.routed, relay.backend, relay.attempts)
    headers["cache-control"] = "no-cache"
    return StreamingResponse(chat_events(relay), media_type="text/event-stream", headers=headers)
