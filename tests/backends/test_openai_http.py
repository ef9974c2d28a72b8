"""OpenAIBackend against a real uvicorn upstream that misbehaves on purpose (retries, errors, SSE)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.conftest import ThreadServer, free_port
from vlrouter.backends.base import (
    BackendOverloaded,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    GenerationRequest,
    Message,
)
from vlrouter.backends.openai_http import OpenAIBackend
from vlrouter.config import OpenAIBackendConfig

COMPLETION = {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def upstream_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["calls"] += 1
        state["auth"] = request.headers.get("authorization")
        state["body"] = body
        script = state["script"]
        action = script.pop(0) if script else "ok"
        if action == "503":
            return JSONResponse({"error": {"message": "busy"}}, status_code=503)
        if action == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"retry-after": "0"})
        if action == "400":
            return JSONResponse({"error": {"message": "no images please"}}, status_code=400)
        if action == "slow":
            await asyncio.sleep(2)
        if body.get("stream"):
            async def events():
                for word in ("hel", "lo"):
                    yield f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n"
                yield f"data: {json.dumps({'choices': [{'delta': {}, 'finish_reason': 'length'}]})}\n\n"
                yield f"data: {json.dumps({'choices': [], 'usage': COMPLETION['usage']})}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        return COMPLETION

    return app


@pytest.fixture(scope="module")
def upstream():
    state = {"calls": 0, "script": []}
    with ThreadServer(upstream_app(state)) as server:
        server.state = state
        yield server


def backend(base_url: str, **kwargs) -> OpenAIBackend:
    cfg = {"kind": "openai", "tier": "cloud", "base_url": base_url, "model": "m", "backoff_s": 0.01,
           "timeouts": {"connect_s": 1, "first_token_s": 1, "total_s": 5}, **kwargs}
    return OpenAIBackend("cloud", OpenAIBackendConfig(**cfg))


REQUEST = GenerationRequest(messages=[Message("user", ["hi"])], max_tokens=4, stop=["x"])


def run(upstream, script, coro_factory, **kwargs):
    upstream.state.update(calls=0, script=list(script))

    async def go():
        b = backend(upstream.url + "/v1", **kwargs)
        try:
            return await coro_factory(b)
        finally:
            await b.aclose()

    return asyncio.run(go())


def test_retries_5xx_then_succeeds(upstream, monkeypatch):
    monkeypatch.setenv("TEST_CLOUD_KEY", "sk-test")
    result = run(upstream, ["503", "503"], lambda b: b.generate(REQUEST), max_retries=2, api_key_env="TEST_CLOUD_KEY")
    assert result.text == "fine" and result.completion_tokens == 1
    assert upstream.state["calls"] == 3
    assert upstream.state["auth"] == "Bearer sk-test"
    assert upstream.state["body"]["stop"] == ["x"] and upstream.state["body"]["model"] == "m"


def test_errors_are_translated(upstream):
    with pytest.raises(BackendUnavailable):
        run(upstream, ["503", "503"], lambda b: b.generate(REQUEST), max_retries=1)
    with pytest.raises(BackendOverloaded):
        run(upstream, ["429", "429"], lambda b: b.generate(REQUEST), max_retries=1)
    with pytest.raises(BackendRejected) as info:
        run(upstream, ["400"], lambda b: b.generate(REQUEST), max_retries=3)
    assert info.value.status == 502 and "no images please" in str(info.value)
    assert upstream.state["calls"] == 1  # a refusal is not retried
    with pytest.raises(BackendTimeout):
        run(upstream, ["slow"], lambda b: b.generate(REQUEST), max_retries=0)


def test_connection_refused_is_unavailable():
    async def go():
        b = backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
        try:
            assert await b.health() is False
            await b.generate(REQUEST)
        finally:
            await b.aclose()

    with pytest.raises(BackendUnavailable):
        asyncio.run(go())


def test_sse_passthrough(upstream):
    async def collect(b):
        return [d async for d in b.stream(REQUEST)]

    deltas = run(upstream, ["503"], collect, max_retries=1)
    assert [d.text for d in deltas if d.text] == ["hel", "lo"]
    assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 1
    assert upstream.state["body"]["stream_options"] == {"include_usage": True}
