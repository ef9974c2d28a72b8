"""What a bad scenario is told, word for word, and the shapes a scenario is reported in (from the
mutation check's survivors: the 400's message is the only thing a client has to fix its request by)."""

from __future__ import annotations

import pytest

from vlrouter.router import ScenarioError, parse_scenario

USE = "use one of ['energy', 'fast', 'quality'] or speed/quality/energy weights"
MESSAGES = [
    ("warp", f"unknown scenario 'warp'; {USE}"),
    ("[1]", f"unknown scenario '[1]'; {USE}"),
    (5, "scenario must be a preset name or an object, got int"),
    ({"colour": 1}, "unknown scenario keys ['colour']; use ['speed', 'quality', 'energy', 'min_quality']"),
    ({"speed": "x"}, "scenario weight 'speed' must be a number, got 'x'"),
    ({"speed": True}, "scenario weight 'speed' must be a number, got True"),
    ({"speed": -1}, "scenario weight 'speed' must be finite and >= 0, got -1"),
    ({"quality": float("nan")}, "scenario weight 'quality' must be finite and >= 0, got nan"),
    ({"speed": 0}, "scenario weights must not all be zero"),
    ("speed=x", "scenario weight 'speed=x' is not key=number"),
    ("{not json", "scenario is not valid JSON: Expecting property name enclosed in double quotes"),
]


@pytest.mark.parametrize(("bad", "message"), MESSAGES)
def test_each_bad_scenario_is_told_what_is_wrong(bad, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(bad)
    err = info.value
    assert (str(err), err.status, err.code, err.param) == (message, 400, "invalid_scenario", "scenario")


def test_how_a_scenario_is_reported():
    assert parse_scenario("fast").as_dict() == {"name": "fast", "speed": 0.6, "quality": 0.3, "energy": 0.1,
                                                "min_quality": 0.9}
    assert parse_scenario({"speed": 1, "quality": 3}).as_dict() == \
        {"name": "custom", "speed": 0.25, "quality": 0.75, "energy": 0.0, "min_quality": 0.972}
    assert [str(parse_scenario(p)) for p in ("Energy", " quality ")] == ["energy", "quality"]
    assert str(parse_scenario({"speed": 1, "quality": 2})) == "speed=0.333,quality=0.667,energy=0"
    assert parse_scenario({"speed": 0, "quality": 1}).as_tuple() == (0.0, 1.0, 0.0)  # a zero weight is allowed
    assert parse_scenario({"speed": 0.6 + 1e-12, "quality": 0.3, "energy": 0.1}).name == "fast"  # float noise
