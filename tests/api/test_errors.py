"""Every kind of bad input gets an OpenAI-style error with the right 4xx, and the worker survives."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

CHAT = "/v1/chat/completions"


def user(content) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 2}


def image_part(url: str) -> list[dict]:
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "what is it?"}]


def b64_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def png(size=(32, 32), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG")
    return buf.getvalue()


def assert_error(resp, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


BAD_CHAT = {
    "malformed_json": (b'{"messages": [', 400, "invalid_json"),
    "not_an_object": (b"[1, 2]", 400, "invalid_value"),
    "missing_messages": ({"model": "vlrouter-auto"}, 400, "invalid_value"),
    "empty_messages": ({"messages": []}, 400, "invalid_value"),
    "empty_content": (user(""), 400, "invalid_value"),
    "no_user_message": ({"messages": [{"role": "system", "content": "be nice"}]}, 400, "invalid_value"),
    "bad_role": ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_value"),
    "bad_base64": (user(image_part("data:image/png;base64,@@@not-base64@@@")), 400, "invalid_base64"),
    "not_an_image": (user(image_part(b64_url(b"hello, I am text", "image/png"))), 400, "invalid_image"),
    "non_image_mime": (user(image_part(b64_url(png(), "text/plain"))), 400, "invalid_image"),
    "truncated_image": (user(image_part(b64_url(png((64, 64))[:60]))), 400, "invalid_image"),
    "decompression_bomb": (user(image_part(b64_url(png((20000, 20000), "1")))), 413, "image_too_large"),
    "unknown_model": ({**user("hi"), "model": "gpt-17"}, 404, "model_not_found"),
    "invalid_scenario_name": ({**user("hi"), "scenario": "turbo"}, 400, "invalid_scenario"),
    "invalid_scenario_weights": ({**user("hi"), "scenario": {"speed": -1}}, 400, "invalid_scenario"),
    "zero_scenario": ({**user("hi"), "scenario": {"speed": 0, "quality": 0}}, 400, "invalid_scenario"),
    "temperature_range": ({**user("hi"), "temperature": 3.5}, 400, "invalid_value"),
    "top_p_range": ({**user("hi"), "top_p": 0}, 400, "invalid_value"),
    "max_tokens_zero": ({**user("hi"), "max_tokens": 0}, 400, "invalid_value"),
    "max_tokens_over_limit": ({**user("hi"), "max_tokens": 10**6}, 400, "invalid_value"),
    "n_two": ({**user("hi"), "n": 2}, 400, "invalid_value"),
    "too_many_stops": ({**user("hi"), "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_value"),
    "remote_url_disabled": (user(image_part("https://example.com/cat.png")), 400, "image_url_forbidden"),
    "ftp_url": (user(image_part("ftp://example.com/cat.png")), 400, "invalid_image_url"),
    "tools": ({**user("hi"), "tools": [{"type": "function", "function": {"name": "f"}}]}, 400,
              "unsupported_parameter"),
    "json_schema_output": ({**user("hi"), "response_format": {"type": "json_object"}}, 400, "unsupported_parameter"),
    "logprobs": ({**user("hi"), "logprobs": True}, 400, "unsupported_parameter"),
    "prompt_over_max_chars": (user("word " * 200_001), 413, "prompt_too_large"),  # 1,000,005 characters
    "prompt_over_max_chars_in_parts": (user([{"type": "text", "text": "x" * 600_000}] * 2), 413,
                                       "prompt_too_large"),
}


def test_unsupported_fields_are_named_and_their_no_op_values_pass(http):
    error = assert_error(http.post(CHAT, json={**user("hi"), "tools": [{"type": "function"}]}), 400)
    assert error["param"] == "tools" and "tools is not supported" in error["message"]
    noop = {"tool_choice": "none", "response_format": {"type": "text"}, "logprobs": False, "tools": []}
    assert http.post(CHAT, json={**user("hi"), "model": "edge", **noop}).status_code == 200


@pytest.mark.parametrize("case", sorted(BAD_CHAT))
def test_bad_chat_input(http, case):
    body, status, code = BAD_CHAT[case]
    if isinstance(body, bytes):
        resp = http.post(CHAT, content=body, headers={"content-type": "application/json"})
    else:
        resp = http.post(CHAT, json=body)
    assert_error(resp, status, code)


def test_bad_scenario_header(http):
    resp = http.post(CHAT, json=user("hi"), headers={"X-VLRouter-Scenario": "speed=abc"})
    assert_error(resp, 400, "invalid_scenario")


def test_body_too_large(http):
    assert_error(http.post(CHAT, content=b"x" * (33 * 1024 * 1024), headers={"content-type": "application/json"}),
                 413, "request_too_large")


def test_unknown_route_and_method(http):
    assert_error(http.get("/v1/nothing"), 404, "not_found")
    assert_error(http.get(CHAT), 405, "method_not_allowed")


def test_worker_survives_a_burst_of_bad_input(http):
    for body, _, _ in BAD_CHAT.values():
        if isinstance(body, bytes):
            http.post(CHAT, content=body, headers={"content-type": "application/json"})
        else:
            http.post(CHAT, json=body)
    ok = http.post(CHAT, json=user("hi"))
    assert ok.status_code == 200
    metrics = http.get("/metrics").text
    assert 'vlrouter_requests_total{backend="none",status="400",tier="none"}' in metrics


def test_private_network_image_url_is_refused(make_gateway, model_server):
    with make_gateway(None, images={"allow_remote": True, "allowed_hosts": ["localhost", "127.0.0.1"]}) as gw:
        import httpx

        resp = httpx.post(gw.url + CHAT, json=user(image_part(f"http://127.0.0.1:{model_server.port}/x.png")))
        assert_error(resp, 400, "image_url_forbidden")
        resp = httpx.post(gw.url + CHAT, json=user(image_part("http://other.example/x.png")))
        error = assert_error(resp, 400, "image_url_forbidden")
        assert "allow-list" in error["message"]
