"""The router contract: a typed input, a typed decision and one abstract method.

A router scores how much a query would gain from the cloud tier (``cloud_benefit`` in [0, 1]);
the base class compares that with the scenario's threshold tau(w) = w . (tau_speed, tau_quality,
tau_energy) and returns a ``Decision``. Trained routers replace the baseline through the same
interface; ``router.factory.ROUTERS`` maps a policy name to its constructor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vlrouter.router.scenario import Scenario


@dataclass(frozen=True)
class RoutingInput:
    """What the router knows about a query before answering it."""

    text: str
    n_images: int
    image_pixels: int
    scenario: Scenario
    features: Any = None  # fused feature vector, when a feature pipeline is configured
    unknown: frozenset[str] = frozenset()  # feature blocks not computed (the cascade's first stage: {"image"})


@dataclass(frozen=True)
class Decision:
    """A router's choice: the tier (and model, for routers that pick one), the threshold it was
    compared with, the scores behind it and a one-line reason."""

    tier: str
    policy: str
    threshold: float
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    model: str | None = None  # the chosen model, for routers that pick among several per tier
    floor: float | None = None  # the quality floor the threshold was fitted for (router.risk); None: not applied
    explanation: dict[str, Any] | None = None  # why this tier (router.explain), for routers that can say


class Router(ABC):
    """A routing policy: ``cloud_benefit`` scores a query, ``route`` turns the score into a ``Decision``."""

    name: ClassVar[str]
    accepts_unknown: ClassVar[bool] = False  # can decide with RoutingInput.unknown blocks (router.cascade)
    # Per-scenario-corner thresholds; tau(w) is their w-weighted mix.
    taus: tuple[float, float, float] = (0.85, 0.45, 0.75)

    @abstractmethod
    def cloud_benefit(self, query: RoutingInput) -> tuple[float, dict[str, float]]:
        """Return (benefit in [0, 1], named component scores) of sending the query to the cloud."""

    @property
    def cascade_band(self) -> float:
        """The routing cascade's band (router.cascade); 0: this router always sees the full features."""
        return 0.0

    def describe(self) -> str:
        """One line for the start-up log."""
        return self.name

    def card(self) -> dict[str, Any]:
        """What /v1/models says of the router (trained routers add checkpoint, data and floors)."""
        return {"policy": self.name, "checkpoint": None, "floors": None}

    def threshold(self, scenario: Scenario) -> float:
        return sum(w * t for w, t in zip(scenario.as_tuple(), self.taus, strict=True))

    def route(self, query: RoutingInput) -> Decision:
        benefit, parts = self.cloud_benefit(query)
        tau = self.threshold(query.scenario)
        tier = "cloud" if benefit >= tau else "edge"
        scores = {"cloud_benefit": round(benefit, 4), **{k: round(v, 4) for k, v in parts.items()}}
        reason = f"cloud_benefit {benefit:.3f} {'>=' if tier == 'cloud' else '<'} tau {tau:.3f} ({query.scenario})"
        return Decision(tier=tier, policy=self.name, threshold=round(tau, 4), scores=scores, reason=reason)
