"""POST /infer: multipart uploads and JSON with base64 images."""

from __future__ import annotations

import base64

from tests.api.test_errors import assert_error, png

FIELDS = {"answer", "tier", "backend", "model", "scenario", "policy", "scores", "threshold", "min_quality", "why",
          "explore", "route_ms", "latency_ms", "queue_ms", "ttft_ms", "tpot_ms", "e2e_ms", "tokens_per_s", "tokens",
          "energy_j", "energy_source", "energy_attribution", "finish_reason", "fallback", "request_id"}


def test_multipart_upload_with_real_photo(http, photo_jpeg, energy_source):
    resp = http.post("/infer", files={"image": ("astronaut.jpg", photo_jpeg, "image/jpeg")},
                     data={"text": "Explain step by step what this person is doing.", "scenario": "quality",
                           "max_tokens": "4"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == FIELDS
    assert body["tier"] == "cloud" and resp.headers["x-vlrouter-tier"] == "cloud"
    assert body["scenario"]["name"] == "quality"
    assert abs(sum(body["scenario"][k] for k in ("speed", "quality", "energy")) - 1) < 1e-9
    assert body["scores"]["image"] == 1.0 and body["policy"] == "complexity-rule"
    assert body["tokens"]["completion"] <= 4 and body["tokens"]["prompt"] > 49
    assert body["latency_ms"] == body["e2e_ms"] >= body["ttft_ms"] >= body["route_ms"] >= 0
    assert body["request_id"] == resp.headers["x-request-id"]
    # the cloud stand-in is a vlrouter model server: it metered its generation and reported it in usage
    assert body["energy_source"] == energy_source
    assert body["energy_j"] > 0 and body["energy_attribution"] in ("exclusive", "apportioned")


def test_multipart_two_images_and_energy_scenario(http, photo_jpeg):
    files = [("image", ("a.jpg", photo_jpeg, "image/jpeg")), ("image", ("b.png", png(), "image/png"))]
    resp = http.post("/infer", files=files, data={"text": "Compare them.", "scenario": "energy", "max_tokens": "2"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["tier"] == "edge"  # tau(energy) is high


def test_json_with_base64_and_data_url(http, photo_jpeg):
    raw = base64.b64encode(photo_jpeg).decode()
    for image in (raw, "data:image/jpeg;base64," + raw):
        resp = http.post("/infer", json={"text": "What is this?", "image": image, "max_tokens": 2,
                                         "scenario": {"speed": 1, "quality": 1, "energy": 0}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["scenario"] == {"name": "custom", "speed": 0.5, "quality": 0.5, "energy": 0.0,
                                           "min_quality": 0.932}  # default_floor(0.5)


def test_forced_model_reports_null_threshold(http):
    body = http.post("/infer", json={"text": "hi", "model": "cloud", "max_tokens": 1}).json()
    assert body["tier"] == "cloud" and body["policy"] == "forced" and body["threshold"] is None


def test_infer_errors(http):
    assert_error(http.post("/infer", json={"image": "x"}), 400, "invalid_value")  # no text
    assert_error(http.post("/infer", json={"text": "hi", "image": "%%%"}), 400, "invalid_base64")
    assert_error(http.post("/infer", content=b"{oops", headers={"content-type": "application/json"}),
                 400, "invalid_json")
    assert_error(http.post("/infer", files={"image": ("x.txt", b"plain text", "text/plain")},
                           data={"text": "hi"}), 400, "invalid_image")
    assert_error(http.post("/infer", data={"text": "hi", "max_tokens": "lots"}), 400, "invalid_value")
    assert_error(http.post("/infer", data={"text": "hi", "scenario": "warp"}), 400, "invalid_scenario")
    assert_error(http.post("/infer", content=b"text", headers={"content-type": "text/plain"}), 415,
                 "unsupported_media_type")


def test_json_images_list(http, photo_jpeg):
    photo, small = base64.b64encode(photo_jpeg).decode(), base64.b64encode(png()).decode()

    def prompt_tokens(**images) -> int:
        resp = http.post("/infer", json={"text": "Compare them.", "model": "edge", "max_tokens": 1, **images})
        assert resp.status_code == 200, resp.text
        return resp.json()["tokens"]["prompt"]

    none, one, two = prompt_tokens(), prompt_tokens(images=[photo]), prompt_tokens(images=[photo, small])
    small_alone = prompt_tokens(images=[small])
    assert one > none and two > one  # every image of the list reached the model
    assert two - none == (one - none) + (small_alone - none)  # each image adds its own tokens, no more
    assert prompt_tokens(image=photo, images=[small]) == two  # ``image`` comes first, then ``images``
    error = assert_error(http.post("/infer", json={"text": "hi", "images": [photo, "@@@"]}), 400, "invalid_base64")
    assert error["param"] == "images.1"
    assert_error(http.post("/infer", json={"text": "hi", "images": [small] * 9}), 400, "too_many_images")
