"""The scenario vector w = (speed, quality, energy): non-negative weights that sum to 1.

Accepted spellings: a preset name (``fast``, ``quality``, ``energy``), a mapping with any of the
keys ``speed``/``quality``/``energy`` (normalised to sum 1), or, in the ``X-VLRouter-Scenario`` header,
a preset name, a JSON object or ``speed=0.2,quality=0.8``.

Presets are mixtures rather than corners so that no objective is ignored entirely: a "fast" user
still prefers a correct answer to a wrong one.
"""

from __future__ import annotations

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

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.speed, self.quality, self.energy)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "speed": self.speed, "quality": self.quality, "energy": self.energy}

    def __str__(self) -> str:
        if self.name != "custom":
            return self.name
        return ",".join(f"{k}={v:.3g}" for k, v in zip(KEYS, self.as_tuple(), strict=True))


def from_weights(weights: dict[str, Any]) -> Scenario:
    unknown = set(weights) - set(KEYS)
    if unknown:
        raise ScenarioError(f"unknown scenario keys {sorted(unknown)}; use {list(KEYS)}")
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
            return Scenario(speed, quality, energy, name)
    return Scenario(speed, quality, energy)


def parse_scenario(value: Any) -> Scenario:
    """Parse a body field or header value into a normalised Scenario."""
    if isinstance(value, Scenario):
        return value
    if isinstance(value, dict):
        return from_weights(value)
    if not isinstance(value, str):
        raise ScenarioError(f"scenario must be a preset name or an object, got {type(value).__name__}")
    text = value.strip()
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
            try:
                weights[key.strip().lower()] = float(num)
            except ValueError as exc:
                raise ScenarioError(f"scenario weight {item!r} is not key=number") from exc
        return from_weights(weights)
    raise ScenarioError(f"unknown scenario {value!r}; use one of {sorted(PRESETS)} or speed/quality/energy weights")
