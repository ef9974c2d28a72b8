"""Server-sent events for streamed chat completions: OpenAI's chunk framing of a ``Relay``.

Framing only: the relay records the request when ``close`` is called, however the stream ends. An
error after the headers have gone is reported in-band as OpenAI does (an ``error`` event, then
``[DONE]``), in the same error shape as every other error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from vlrouter.api.errors import as_error, error_payload
from vlrouter.api.pipeline import Relay
from vlrouter.api.responses import finish_reason, routing_headers, usage
from vlrouter.errors import VLRouterError
from vlrouter.protocol import ChatCompletionChunk, ChunkChoice, Delta

DONE = "data: [DONE]\n\n"


def _event(chunk: ChatCompletionChunk) -> str:
    return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"


async def chat_events(relay: Relay) -> AsyncIterator[str]:
    """The chunks of one streamed completion: role, text deltas, finish, optional usage, ``[DONE]``."""
    query, model = relay.routed.query, relay.backend.model
    chunk_id = f"chatcmpl-{query.request_id}"
    error: VLRouterError | None = None
    try:
        yield _event(ChatCompletionChunk(id=chunk_id, model=model,
                                         choices=[ChunkChoice(delta=Delta(role="assistant", content=""))]))
        async for text in relay.texts():
            yield _event(ChatCompletionChunk(id=chunk_id, model=model,
                                             choices=[ChunkChoice(delta=Delta(content=text))]))
        yield _event(ChatCompletionChunk(id=chunk_id, model=model, choices=[
            ChunkChoice(delta=Delta(), finish_reason=finish_reason(relay.final.finish_reason))]))
        if query.include_usage:
            result, energy = relay.outcome()
            yield _event(ChatCompletionChunk(id=chunk_id, model=model, choices=[],
                                             usage=usage(result.prompt_tokens, result.completion_tokens, energy)))
        yield DONE
    except Exception as exc:  # after the headers: report in-band
        error = as_error(exc)
        yield f"data: {json.dumps(error_payload(error))}\n\n"
        yield DONE
    finally:
        await relay.close(error)


def chat_stream(relay: Relay) -> StreamingResponse:
    """The SSE response for a relay, with the routing headers."""
    headers = routing_headers(relay.routed, relay.backend, relay.attempts)
    headers["cache-control"] = "no-cache"
    return StreamingResponse(chat_events(relay), media_type="text/event-stream", headers=headers)
