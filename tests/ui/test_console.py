"""The console in a real headless Chromium against a running gateway: every panel renders with data
after real traffic, Try it completes a request with an image and posts feedback, a wrong key is
refused, and each panel is screenshotted under the test's temp dir.

``VLROUTER_CONSOLE_SHOTS=docs/console`` also writes the screenshots there (palette PNGs for README).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.ui.conftest import KEY
from vlrouter.telemetry.decision_log import read_rows

QUESTIONS = ["What colour is the square?", "How many circles are there?",
             "Explain step by step why the sky looks blue on a clear day.", "Is there text in the picture?",
             "Count the red shapes and compare them with the blue ones.", "Name the largest shape."]


def send_traffic(gw, photo_data_url: str) -> list[str]:
    """Requests a console shows: three scenarios, text and image questions, a stream, errors, feedback;
    spread over some seconds so that the Live charts have a shape."""
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    ids = []
    for i in range(18):
        question = QUESTIONS[i % len(QUESTIONS)]
        content = [{"type": "text", "text": question}]
        if i % 2:
            content.insert(0, {"type": "image_url", "image_url": {"url": photo_data_url}})
        raw = sdk.chat.completions.with_raw_response.create(
            model="vlrouter-auto", max_tokens=3, messages=[{"role": "user", "content": content}],
            extra_body={"scenario": ("fast", "quality", "energy")[i % 3]})
        ids.append(raw.headers["x-request-id"])
        time.sleep(0.6)  # pacing, not a wait: the traffic spreads over several of the Live chart's buckets
    stream = sdk.chat.completions.create(model="vlrouter-auto", max_tokens=3, stream=True,
                                         messages=[{"role": "user", "content": "Say hello."}])
    assert any(chunk.choices and chunk.choices[0].delta.content is not None for chunk in stream)
    for i, rid in enumerate(ids[:6]):
        sdk.post("/feedback", body={"request_id": rid, "score": float(i % 2)}, cast_to=object)
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="vlrouter-auto", max_tokens=1, extra_body={"scenario": "nope"},
                                    messages=[{"role": "user", "content": "x"}])
    return ids


@pytest.fixture(scope="module")
def traffic(console, photo_data_url):
    ids = send_traffic(console, photo_data_url)
    deadline = time.monotonic() + 10
    while len(read_rows(console.db)) < len(ids) + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    return ids


@pytest.fixture
def page(browser, console, tmp_path):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(console.url + "/ui#live")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def use_key(page, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#key-form button")


def shoot(page, name: str, tmp_path: Path, *, docs: bool = True) -> Path:
    """A full-page screenshot under tmp_path; also under $VLROUTER_CONSOLE_SHOTS as a small palette PNG."""
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)  # let charts finish their first paint
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    out = os.environ.get("VLROUTER_CONSOLE_SHOTS")
    if out and docs:
        from PIL import Image

        Path(out).mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(
            Path(out) / f"{name}.png", optimize=True)
    return path


def test_data_endpoints_need_the_key_and_the_page_is_public(console):
    assert httpx.get(console.url + "/ui").status_code == 200
    assert httpx.get(console.url + "/ui/static/vendor/uPlot-1.6.32.iife.min.js").status_code == 200
    for path in ("/ui/api/live", "/ui/api/savings", "/ui/api/decisions", "/ui/api/router"):
        assert httpx.get(console.url + path).status_code == 401
        wrong = httpx.get(console.url + path, headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    refused = httpx.post(console.url + "/ui/api/route", json={"messages": [{"role": "user", "content": "hi"}]})
    assert refused.status_code == 401
    short = httpx.get(console.url + "/ui/api/live?window=5", headers={"Authorization": f"Bearer {KEY}"})
    assert short.status_code == 400 and short.json()["error"]["param"]


def test_without_a_log_the_figures_say_so_and_the_router_panel_still_works(make_gateway):
    with make_gateway(None) as gw:  # complexity-rule, no features, log disabled
        live = httpx.get(gw.url + "/ui/api/live", timeout=30)
        router = httpx.get(gw.url + "/ui/api/router", timeout=30)
    assert live.status_code == 409 and live.json()["error"]["code"] == "log_disabled"
    r = router.json()
    assert r["policy"] == "complexity-rule" and r["checkpoint"] is None and r["curve"] is None
    assert r["corner_taus"] == [0.85, 0.45, 0.75]
    assert r["presets"]["quality"]["threshold"] == pytest.approx(0.1 * 0.85 + 0.8 * 0.45 + 0.1 * 0.75)  # w . taus


def test_the_console_can_be_switched_off(tiny_vlm):
    from tests.conftest import gateway_settings
    from vlrouter.api.app import build_app

    app = build_app(gateway_settings(tiny_vlm, None, console={"enabled": False}))
    assert not [r for r in app.routes if getattr(r, "path", "").startswith("/ui")]


def test_a_wrong_key_is_refused_in_the_page(page, traffic, tmp_path):
    page.wait_for_selector("body[data-auth=refused]")
    use_key(page, "sk-wrong")
    page.wait_for_function("document.getElementById('banner').textContent.includes('incorrect API key')")
    assert page.get_attribute("[data-panel=live]", "data-ready") is None
    shoot(page, "wrong-key", tmp_path, docs=False)
    use_key(page, KEY)
    page.wait_for_selector("[data-panel=live][data-ready='1']")
    assert page.is_hidden("#banner")


def test_live_panel(page, traffic, tmp_path):
    use_key(page, KEY)
    page.wait_for_selector("[data-panel=live][data-ready='1']")
    page.select_option("#live-window", "60")
    page.wait_for_function("document.getElementById('live-kpis').textContent.includes('last 1 min')")
    kpis = page.inner_text("#live-kpis")
    assert "edge share" in kpis and "%" in kpis
    assert page.locator("#chart-rate canvas").count() == 1 and page.locator("#chart-share canvas").count() == 1
    for panel in ("#live-latency", "#live-energy"):
        assert page.locator(f"{panel} .pill").count() >= 1
    assert "model_not_found" in page.inner_text("#live-errors")
    assert "invalid_scenario" in page.inner_text("#live-errors")
    assert "hits of" in page.inner_text("#live-misc")  # the feature cache saw lookups
    shoot(page, "live", tmp_path)
    before = page.inner_text("#live-updated")  # it refreshes on its own (console.refresh_s: 1 here)
    page.wait_for_function(f"document.getElementById('live-updated').textContent !== {before!r}", timeout=10_000)
    page.click("#theme")
    page.wait_for_timeout(200)
    assert page.get_attribute("html", "data-theme") == "dark"
    shoot(page, "live-dark", tmp_path)


def test_savings_panel(page, traffic, tmp_path):
    use_key(page, KEY)
    page.goto(page.url.split("#")[0] + "#savings")
    page.wait_for_selector("[data-panel=savings][data-ready='1']")
    cards = page.inner_text("#savings-cards").lower()
    assert "energy" in cards and "cost" in cards and "all cloud" in cards and "saved" in cards
    assert page.locator("#savings-method li").count() >= 4
    shoot(page, "savings", tmp_path)


def test_decisions_panel_opens_a_record(page, traffic, tmp_path):
    use_key(page, KEY)
    page.goto(page.url.split("#")[0] + "#decisions")
    page.wait_for_selector("[data-panel=decisions][data-ready='1']")
    rows = page.locator("#decisions-table tbody tr[data-id]")
    assert rows.count() >= len(traffic)
    target = page.locator(f"#decisions-table tr[data-id='{traffic[-1]}']")
    target.click()
    page.wait_for_selector(f"#decision-detail[data-loaded='{traffic[-1]}']")
    why = page.inner_text("#decision-detail .why")
    assert "threshold" in why or "random tier" in why
    shoot(page, "decisions", tmp_path)


def test_try_it_streams_an_answer_for_an_image_and_takes_feedback(page, console, traffic, photo_jpeg, tmp_path):
    use_key(page, KEY)
    page.goto(page.url.split("#")[0] + "#try")
    page.wait_for_selector("[data-panel=try][data-ready='1']")
    page.set_input_files("#try-image", files=[{"name": "astronaut.jpg", "mimeType": "image/jpeg",
                                                "buffer": photo_jpeg}])
    page.wait_for_selector("#try-preview:not([hidden])")
    page.fill("#try-text", "What is in this picture?")
    page.click("[data-preset=fast]")
    page.check("#floor-on")
    page.wait_for_selector("#try-decision .pill")  # the decision preview, before anything is generated
    page.click("#try-go")
    page.wait_for_selector("#try-answer-card[data-done='1']", timeout=90_000)
    served = page.inner_text("#try-served")
    assert "answered by" in served and " ms" in served
    page.click("#try-feedback [data-score='1']")
    page.wait_for_function("document.getElementById('try-feedback-state').textContent.includes('recorded')")
    shoot(page, "try-it", tmp_path)
    rows = [r for r in read_rows(console.db) if r["scenario_name"] == "fast" and r["stream"] == 1]
    assert rows, "the Try-it request was logged"
    deadline = time.monotonic() + 5
    while rows[-1]["feedback_score"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = [r for r in read_rows(console.db) if r["request_id"] == rows[-1]["request_id"]]
    assert rows[-1]["feedback_score"] == 1.0
    assert rows[-1]["prompt_tokens"] and rows[-1]["completion_tokens"] is not None


def test_router_panel_shows_the_checkpoint_and_its_curve(page, console_checkpoint, traffic, tmp_path):
    use_key(page, KEY)
    page.goto(page.url.split("#")[0] + "#router")
    page.wait_for_selector("[data-panel=router][data-ready='1']")
    top = page.inner_text("#router-top")
    assert "mlp" in top and "/".join(console_checkpoint.parts[-2:]) in top
    assert "synthetic bench" in page.inner_text("#router-bottom")
    assert "signals" in page.inner_text("#router-spec")
    assert page.locator("#chart-curve canvas").count() == 1
    shoot(page, "router", tmp_path)


def test_route_preview_decides_without_logging(console, traffic, photo_data_url):
    before = len(read_rows(console.db))
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": photo_data_url}},
                                                      {"type": "text", "text": "What is it?"}]}],
            "scenario": {"speed": 0.2, "quality": 0.8}}
    resp = httpx.post(console.url + "/ui/api/route", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60)
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert d["tier"] in ("edge", "cloud") and d["policy"] == "mlp" and "margin" in d["scores"]
    assert d["scenario"]["quality"] == pytest.approx(0.8)
    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    for raw in (b'{"messages": []}', b"{", b"[]", b'{"messages": [{"role": "user", "content": "x"}], "scenario": "no"}',
                b'{"messages": [{"role": "user", "content": "x"}], "model": "nope"}'):
        bad = httpx.post(console.url + "/ui/api/route", content=raw, headers=auth)
        assert 400 <= bad.status_code < 500 and set(bad.json()["error"]) == {"message", "type", "param", "code"}, raw
    time.sleep(0.2)  # four log-writer periods (FLUSH_S): a row for a refused request would be in by now
    assert len(read_rows(console.db)) == before


def test_decision_lookup_by_id(console, traffic):
    auth = {"Authorization": f"Bearer {KEY}"}
    resp = httpx.get(console.url + f"/ui/api/decisions/{traffic[0]}", headers=auth)
    assert resp.status_code == 200
    assert resp.json()["record"]["request_id"] == traffic[0] and resp.json()["why"]
    missing = httpx.get(console.url + "/ui/api/decisions/req-none", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "request_not_found"
