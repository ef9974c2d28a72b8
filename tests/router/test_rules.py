from __future__ import annotations

import pytest

from vlrouter.router import ROUTERS, RoutingInput, build_router, parse_scenario


def query(text: str, images: int = 0, scenario: str = "quality") -> RoutingInput:
    return RoutingInput(text=text, n_images=images, image_pixels=images * 224 * 224,
                        scenario=parse_scenario(scenario))


def test_registry():
    assert "complexity-rule" in ROUTERS
    with pytest.raises(ValueError, match="unknown routing policy"):
        build_router("nope")


@pytest.mark.parametrize("scenario", ["fast", "quality", "energy"])
def test_short_text_stays_on_edge(scenario):
    assert build_router("complexity-rule").route(query("What colour is grass?", 0, scenario)).tier == "edge"


def test_image_reasoning_goes_to_cloud_for_quality_only():
    router = build_router("complexity-rule")
    q = "Explain step by step how many apples are in the picture."
    decisions = {s: router.route(query(q, 1, s)) for s in ("fast", "quality", "energy")}
    assert decisions["quality"].tier == "cloud"
    assert decisions["fast"].tier == "edge" and decisions["energy"].tier == "edge"
    d = decisions["quality"]
    assert d.scores["image"] == 1.0 and d.scores["reasoning"] == 1.0
    assert d.threshold == pytest.approx(0.1 * 0.85 + 0.8 * 0.45 + 0.1 * 0.75)
    assert "tau" in d.reason


def test_threshold_orders_scenarios():
    router = build_router("complexity-rule")
    taus = {s: router.threshold(parse_scenario(s)) for s in ("fast", "quality", "energy")}
    assert taus["quality"] < taus["energy"] < taus["fast"]
