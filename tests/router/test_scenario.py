from __future__ import annotations

import pytest

from vlrouter.router import PRESETS, ScenarioError, parse_scenario


def test_presets_and_normalisation():
    for name, weights in PRESETS.items():
        s = parse_scenario(name.upper())
        assert s.name == name and s.as_tuple() == weights
    s = parse_scenario({"speed": 2, "energy": 2})
    assert s.as_tuple() == (0.5, 0.0, 0.5) and s.name == "custom"
    assert parse_scenario({"speed": 6, "quality": 3, "energy": 1}).name == "fast"


def test_header_spellings():
    assert parse_scenario('{"quality": 1}').as_tuple() == (0.0, 1.0, 0.0)
    assert parse_scenario("speed=1, quality=3").as_tuple() == (0.25, 0.75, 0.0)
    assert str(parse_scenario("speed=1,quality=1")) == "speed=0.5,quality=0.5,energy=0"


@pytest.mark.parametrize("bad", ["warp", {"speed": -1}, {"speed": 0}, {"colour": 1}, {"speed": "x"},
                                 {"speed": float("nan")}, "speed=x", "{not json", "[1]", 5, {"speed": True}])
def test_invalid(bad):
    with pytest.raises(ScenarioError):
        parse_scenario(bad)
