"""The scenario vector w = (speed, quality, energy): non-negative weights that sum to 1.

Accepted spellings: a preset name (``fast``, ``quality``, ``energy``), a mapping with any of the
keys ``speed``/``quality``/``energy`` (normalised to sum 1), or, in the ``X-VLRouter-Scenario`` header,
a preset name, a JSON object or ``speed=0.2,quality=0.8``.

Presets are mixtures rather than corners so that no objective is ignored entirely: a "fast" user
still prefers a correct answer to a wrong one.

A scenario also carries a **quality floor** (``min_quality``): the share of the strongest model's
expected quality to keep over the traffic (``router.risk`` turns it into a threshold). Each preset
has one: ``quality`` keeps >= 98% and then saves what it can; ``fast`` and ``energy`` keep >= 90%
(ECVL-Router's "< 10% drop") and minimise latency / energy. Custom weights get the floor of the
same linear rule in their quality weight that gives the presets theirs,
``floor(w) = clip(0.852 + 0.16 * w_quality, 0.85, 1)`` (0.90 at w_quality 0.3, 0.98 at 0.8). A request
may set its own: ``min_quality`` in a scenario object, ``fast;min_quality=0.95`` or
``speed=0.5,quality=0.5,min_quality=0.95`` in the header; the body's top-level ``min_quality`` too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from vlrouter.errors import VLRouterError

PRESETS: dict[str, tuple[float, float, float]] = {
    "fast": (0.6, 0.3, 0.1),
    "quality": (0.1, 0.8, 0.1),
    "energy": (0.1, 0.3, 0.6),
}
KEYS = ("speed", "quality", "energy")
FLOOR_KEY = "min_quality"


def default_floor(w_quality: float) -> float:
    """The floor of a scenario that names none: linear in the quality weight through the presets' floors."""
    return round(min(1.0, max(0.85, 0.852 + 0.16 * w_quality)), 4)


FLOORS: dict[str, float] = {name: default_floor(w[1]) for name, w in PRESETS.items()}  # 0.90 / 0.98 / 0.90


class ScenarioError(VLRouterError, ValueError):
    """The scenario is not a preset name or a valid weight vector (400 ``invalid_scenario``)."""

    status = 400
    code = "invalid_scenario"

    def __init__(self, message: str, *, param: str | None = "scenario"):
        super().__init__(message, param=param)


@dataclass(frozen=True)
class Scenario:
    speed: float
    quality: float
    energy: float
    name: str = "custom"
    min_quality: float | None = None  # asked for by the request (or config); None: the default floor

    @property
    def floor(self) -> float:
        """The quality floor in force: the one asked for, else the preset's, else ``default_floor``."""
        if self.min_quality is not None:
            return self.min_quality
        return FLOORS.get(self.name, default_floor(self.quality))

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.speed, self.quality, self.energy)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "speed": self.speed, "quality": self.quality, "energy": self.energy,
                "min_quality": self.floor}

    def __str__(self) -> str:
        text = self.name if self.name != "custom" else ",".join(
            f"{k}={v:.3g}" for k, v in zip(KEYS, self.as_tuple(), strict=True))
        return text if self.min_quality is None else f"{text};{FLOOR_KEY}={self.min_quality:.4g}"


def check_floor(raw: Any) -> float:
    """A valid ``min_quality``: a share in (0, 1]."""
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or not 0 < raw <= 1:
        raise ScenarioError(f"{FLOOR_KEY} must be a share in (0, 1], e.g. 0.9; got {raw!r}", param=FLOOR_KEY)
    return float(raw)


def with_floor(scenario: Scenario, min_quality: Any) -> Scenario:
    """``scenario`` with the request's floor (``None`` keeps the one it has)."""
    if min_quality is None:
        return scenario
    return dataclasses.replace(scenario, min_quality=check_floor(min_quality))


def from_weights(weights: dict[str, Any]) -> Scenario:
    weights = dict(weights)
    floor = weights.pop(FLOOR_KEY, None)
    preset = weights.pop("name", None) if set(weights) <= {"name"} else None
    if isinstance(preset, str) and preset.lower() in PRESETS:  # {"name": "fast", "min_quality": 0.95}
        return with_floor(Scenario(*PRESETS[preset.lower()], name=preset.lower()), floor)
    if preset is not None:  # {"name": "warp"}: not "all weights zero"
        raise ScenarioError(f"unknown scenario {preset!r}; use one of {sorted(PRESETS)} or speed/quality/energy "
                            "weights")
    unknown = set(weights) - set(KEYS)
    if unknown:
        raise ScenarioError(f"unknown scenario keys {sorted(unknown)}; use {[*KEYS, FLOOR_KEY]}")
    values = []
    for key in KEYS:
        raw = weights.get(key, 0.0)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ScenarioError(f"scenario weight {key!r} must be a number, got {raw!r}")
        if not math.isfinite(raw) or raw < 0:
            raise ScenarioError(f"scenario weight {key!r} must be finite and >= 0, got {raw!r}")
        values.append(float(raw))
    total = sum(values)
    if total <= 0:
        raise ScenarioError("scenario weights must not all be zero")
    speed, quality, energy = (v / total for v in values)
    for name, preset in PRESETS.items():
        if all(abs(a - b) < 1e-9 for a, b in zip(preset, (speed, quality, energy), strict=True)):
            return with_floor(Scenario(*preset, name), floor)  # exactly the named preset
    return with_floor(Scenario(speed, quality, energy), floor)


def _number(text: str, item: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise ScenarioError(f"scenario weight {item!r} is not key=number") from exc


def scenario_for(name: str, weights=None) -> Scenario:
    """A named scenario: the preset ``name``, or (an ``extra_scenarios`` entry, e.g. "quality-only")
    its ``weights`` (speed, quality, energy) under the default floor rule."""
    if name in PRESETS or weights is None:
        return parse_scenario(name)
    return from_weights(dict(zip(KEYS, map(float, weights), strict=True)))


def parse_scenario(value: Any) -> Scenario:
    """Parse a body field or header value into a normalised Scenario."""
    if isinstance(value, Scenario):
        return value
    if isinstance(value, dict):
        return from_weights(value)
    if not isinstance(value, str):
        raise ScenarioError(f"scenario must be a preset name or an object, got {type(value).__name__}")
    text, _, floor = value.strip().partition(";")
    if floor:  # "fast;min_quality=0.95"
        key, _, num = floor.partition("=")
        if key.strip().lower() != FLOOR_KEY:
            raise ScenarioError(f"scenario option {floor!r}: only {FLOOR_KEY}=<number> may follow ';'")
        return with_floor(parse_scenario(text), _number(num, floor))
    text = text.strip()
    if text.lower() in PRESETS:
        return Scenario(*PRESETS[text.lower()], name=text.lower())
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"scenario is not valid JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise ScenarioError("scenario JSON must be an object")
        return from_weights(obj)
    if "=" in text:
        weights: dict[str, Any] = {}
        for item in text.split(","):
            key, _, num = item.partition("=")
            weights[key.strip().lower()] = _number(num, item)
        return from_weights(weights)
    raise ScenarioError(f"unknown scenario {value!r}; use one of {sorted(PRESETS)} or speed/quality/energy weights")
