"""Optional API keys: 401 in the OpenAI shape; health stays open."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.test_errors import assert_error


@pytest.fixture(scope="module")
def secured(tiny_vlm):
    from tests.conftest import ThreadServer, gateway_settings
    from vlrouter.api.app import build_app

    settings = gateway_settings(tiny_vlm, None, server={"api_keys": ["sk-good", "sk-other"]})
    with ThreadServer(build_app(settings)) as server:
        yield server


def test_missing_and_wrong_keys_get_401(secured):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert_error(httpx.post(secured.url + "/v1/chat/completions", json=body), 401, "invalid_api_key")
    wrong = httpx.post(secured.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-bad"})
    assert_error(wrong, 401, "invalid_api_key")
    assert_error(httpx.post(secured.url + "/infer", json={"text": "hi"}), 401, "invalid_api_key")
    assert_error(httpx.get(secured.url + "/v1/models"), 401, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=secured.url + "/v1", api_key="sk-bad", max_retries=0).models.list()


def test_good_key_works_and_health_stays_open(secured):
    client = openai.OpenAI(base_url=secured.url + "/v1", api_key="sk-other", max_retries=0)
    reply = client.chat.completions.create(model="vlrouter-auto", max_tokens=1,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert httpx.get(secured.url + "/healthz").status_code == 200
    assert httpx.get(secured.url + "/readyz").status_code == 200
    assert httpx.get(secured.url + "/metrics").status_code == 200
