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
    ({}, "scenario weights must not all be zero"),
    ({"min_quality": 0.9}, "scenario weights must not all be zero"),
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


FLOOR_MESSAGE = "min_quality must be a share in (0, 1], e.g. 0.9; got {!r}"


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.0000001, float("nan"), float("inf"), True, "0.9", [0.9]])
def test_a_bad_floor_is_told_what_is_wrong_on_its_own_param(bad):
    for value in ({"name": "fast", "min_quality": bad}, {"speed": 1, "min_quality": bad}):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(value)
        assert (info.value.message, info.value.param, info.value.status) == (FLOOR_MESSAGE.format(bad), "min_quality",
                                                                             400)


@pytest.mark.parametrize("good", [1, 1.0, 0.5, 1e-9])
def test_a_floor_in_range_is_kept_as_a_float(good):
    s = parse_scenario({"name": "Fast", "min_quality": good})
    assert s.name == "fast" and s.as_tuple() == (0.6, 0.3, 0.1)
    assert s.min_quality == good and isinstance(s.min_quality, float) and s.floor == good


def test_floors_on_presets_weights_and_headers():
    from vlrouter.router.scenario import PRESETS, with_floor

    fast = parse_scenario("fast")
    assert with_floor(fast, None) is fast
    raised = with_floor(fast, 0.95)
    assert (raised.name, raised.as_tuple(), raised.min_quality) == ("fast", fast.as_tuple(), 0.95)
    assert parse_scenario({"name": "quality"}) == parse_scenario("quality")  # no floor: the preset's
    assert parse_scenario({"name": "quality"}).min_quality is None and parse_scenario("quality").floor == 0.98
    for name, weights in PRESETS.items():  # weights equal to a preset's are that preset, floor included
        s = parse_scenario({**dict(zip(("speed", "quality", "energy"), weights, strict=True)), "min_quality": 0.93})
        assert s == with_floor(parse_scenario(name), 0.93)
    with pytest.raises(ScenarioError, match=r"^unknown scenario 'warp'; use one of \['energy'"):
        parse_scenario({"name": "warp"})
    with pytest.raises(ScenarioError, match=r"unknown scenario keys \['name'\]"):
        parse_scenario({"name": "fast", "speed": 1})  # a name goes alone (with its floor)
    assert parse_scenario(" Energy ; min_quality = 0.91 ") == with_floor(parse_scenario("energy"), 0.91)


def test_the_default_floor_rule_is_rounded_to_four_places():
    from vlrouter.router.scenario import default_floor

    assert default_floor(1 / 3) == 0.9053 and default_floor(0.0) == 0.852 and default_floor(2.0) == 1.0


def test_how_scenarios_print():
    assert str(parse_scenario("fast")) == "fast"
    assert str(parse_scenario("fast;min_quality=0.95")) == "fast;min_quality=0.95"
    assert str(parse_scenario("speed=1,quality=1")) == "speed=0.5,quality=0.5,energy=0"
    assert str(parse_scenario({"speed": 1, "quality": 3, "min_quality": 0.875})) == \
        "speed=0.25,quality=0.75,energy=0;min_quality=0.875"


def test_named_scenarios_and_header_options():
    from vlrouter.router.scenario import scenario_for

    assert scenario_for("fast") == parse_scenario("fast") and scenario_for("fast", (0, 1, 0)).name == "fast"
    only = scenario_for("quality-only", (0, 1, 0))  # an extra_scenarios entry: its weights, the default floor
    assert (only.name, only.as_tuple(), only.min_quality, only.floor) == ("custom", (0.0, 1.0, 0.0), None, 1.0)
    assert scenario_for("half", [1, 1, 0]).as_tuple() == (0.5, 0.5, 0.0)
    with pytest.raises(ScenarioError, match="unknown scenario 'half'"):
        scenario_for("half")
    assert parse_scenario("fast;MIN_QUALITY=0.9").min_quality == 0.9
    for option in ("min_quality", "min_quality=a=b", "min_quality=abc"):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(f"fast;{option}")
        assert info.value.message == f"scenario weight {option!r} is not key=number"
    with pytest.raises(ScenarioError) as info:
        parse_scenario("fast;floor=0.9")
    assert info.value.message == "scenario option 'floor=0.9': only min_quality=<number> may follow ';'"
    with pytest.raises(ScenarioError) as info:
        parse_scenario("speed=1=2")
    assert info.value.message == "scenario weight 'speed=1=2' is not key=number"
