"""The routing cascade: first-stage decisions without the image encoder, calibrated to agree with the
full router, and the gateway skipping the image encoder where the first stage is sure."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from tests.router.test_mlp_router import bench, trained  # noqa: F401  (module fixtures)
from vlrouter.router import Decision, RoutingInput, parse_scenario
from vlrouter.router.cascade import calibrate_band, cascade_margins, settled, wilson_lower


def test_unknown_image_block_reads_as_the_training_mean(trained):  # noqa: F811
    ds, X, _, router, _, _ = trained
    x = X[ds.split("test")[0]]
    sl = router.spec.slices()["image"]
    filled = x.copy()
    filled[sl] = router.mean[sl]
    scenario = parse_scenario("quality")
    cheap = router.route(RoutingInput(text="", n_images=1, image_pixels=1, scenario=scenario, features=x,
                                      unknown=frozenset({"image"})))
    explicit = router.route(RoutingInput(text="", n_images=1, image_pixels=1, scenario=scenario, features=filled))
    assert cheap.scores == explicit.scores
    assert not np.array_equal(x[sl], filled[sl])  # the caller's vector is not modified


def test_band_meets_the_agreement_target_on_its_data_and_grows_with_it(trained):  # noqa: F811
    ds, X, _, router, _, _ = trained
    dev = X[ds.split("dev")]
    loose, strict = calibrate_band(router, dev, target=0.9), calibrate_band(router, dev, target=0.99)
    n = loose["n"]
    assert min(wilson_lower(a * n, n) for a in loose["agreement"].values()) >= 0.9
    assert min(loose["agreement"].values()) >= 0.9  # the point agreement is at least its lower bound
    if wilson_lower(n, n) < 0.99:  # too few dev queries to show 99% even with full agreement: never skip
        assert set(strict["image_encoder_share"].values()) == {1.0}
    assert strict["band"] >= loose["band"]
    assert max(strict["image_encoder_share"].values()) >= max(loose["image_encoder_share"].values())
    # the checkpoint carries the band calibrated on dev at training time
    assert router.cascade_band == pytest.approx(calibrate_band(router, dev)["band"], abs=1e-6)


def test_cascade_agreement_holds_on_test(trained):  # noqa: F811
    ds, X, _, router, _, _ = trained
    test = X[ds.split("test")]
    test = test[np.abs(test[:, router.spec.slices()["image"]]).sum(1) > 0]
    for name in ("fast", "quality", "energy"):
        w = np.array(parse_scenario(name).as_tuple(), np.float32)
        tau = router.thresholds[name]
        full, cheap = cascade_margins(router, test, w)
        final = np.where(np.abs(cheap - tau) >= router.cascade_band, cheap >= tau, full >= tau)
        assert np.mean(final == (full >= tau)) >= 0.95, name  # 98% on dev; test is new data


def test_wilson_lower_bound():
    assert wilson_lower(200, 200) == pytest.approx(0.98665, abs=1e-4)
    assert wilson_lower(199, 200) < 0.98 < 199 / 200
    assert wilson_lower(0, 0) == 0.0


def test_settled_needs_a_margin_and_a_band():
    d = Decision(tier="edge", policy="mlp", threshold=0.1, scores={"margin": -0.3})
    assert settled(d, 0.2) and not settled(d, 0.5) and not settled(d, 0.0)
    assert not settled(Decision(tier="edge", policy="complexity-rule", threshold=0.5), 0.2)


@pytest.mark.parametrize("band", [0.0, 1e9, None])
def test_gateway_cascade(trained, features_config, make_gateway, photo_jpeg, band):  # noqa: F811
    *_, path, _ = trained
    routing = {"policy": "mlp", "checkpoint": str(path)}
    if band is not None:
        routing["cascade_band"] = band
    image = "data:image/jpeg;base64," + base64.b64encode(photo_jpeg).decode()
    with make_gateway(None, features=features_config.model_dump(), routing=routing) as gw:
        body = httpx.post(gw.url + "/infer", json={"text": "How many people?", "image": image, "max_tokens": 1},
                          timeout=60).json()
        text_only = httpx.post(gw.url + "/infer", json={"text": "What is 2+2?", "max_tokens": 1}, timeout=60).json()
        metrics = httpx.get(gw.url + "/metrics").text
    assert body["policy"] == "mlp" and "image_encoder" not in text_only["scores"]
    stages = {s: f'vlrouter_routing_cascade_total{{stage="{s}"}} 1.0' in metrics for s in ("text", "image")}
    if band == 0.0:  # off: the image is always embedded, no cascade
        assert "image_encoder" not in body["scores"] and not any(stages.values())
    elif band == 1e9:  # nothing is ever sure enough: the second stage decides
        assert body["scores"]["image_encoder"] == 1.0 and stages == {"text": False, "image": True}
    else:  # the checkpoint's band: one of the two stages decided, and the metric says which
        assert body["scores"]["image_encoder"] in (0.0, 1.0)
        assert stages["text" if body["scores"]["image_encoder"] == 0.0 else "image"]
