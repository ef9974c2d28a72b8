"""The planner: from a requested model (and, for ``vlrouter-auto``, the router's decision) to the
chain of backends to try, with exploration and its propensity. Pure: no HTTP, no I/O.

Chains: an auto-routed request gets the chosen tier's first backend, then (with
``routing.fallback``) the other tier's first backend. A forced request (a tier, a backend name or a
backend's model name) gets exactly one backend and never falls back.

Exploration (``routing.explore`` = eps): with probability eps the served tier is drawn uniformly from
the tiers that have a backend. The logged propensity P(served tier | router's choice) =
(1 - eps) * [served == chosen] + eps / n_tiers is what ``vlrouter train --from-log`` weights by.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from vlrouter.config import TIERS
from vlrouter.errors import VLRouterError
from vlrouter.router.base import Decision

AUTO_MODEL = "vlrouter-auto"


class UnknownModel(VLRouterError):
    """The requested model is neither ``vlrouter-auto``, a tier, a backend nor a backend's model (404)."""

    status = 404
    code = "model_not_found"


@dataclass(frozen=True)
class BackendRef:
    """What the planner knows of a backend: its name, tier and the model name clients see."""

    name: str
    tier: str
    model: str


@dataclass(frozen=True)
class Plan:
    """Backends to try in order, the decision behind them and how the served tier was drawn."""

    chain: tuple[str, ...]
    decision: Decision
    explore: bool = False  # the tier was drawn at random (routing.explore), not chosen by the router
    propensity: float = 1.0  # probability that this tier was the one served, given the router's choice


class Planner:
    """Turns a requested model and a router decision into a ``Plan``."""

    def __init__(self, backends: list[BackendRef], *, fallback: bool = True, explore: float = 0.0,
                 rng: random.Random | None = None):
        self.backends = {b.name: b for b in backends}
        self.fallback = fallback
        self.explore = explore
        self.rng = rng or random.Random()

    def first_of_tier(self, tier: str) -> str | None:
        return next((b.name for b in self.backends.values() if b.tier == tier), None)

    def by_model_name(self, model: str) -> str | None:
        """The backend called ``model``, else the first whose served model is ``model``."""
        if model in self.backends:
            return model
        return next((b.name for b in self.backends.values() if b.model == model), None)

    def forced(self, model: str) -> Plan:
        """The one-backend plan for a requested tier, backend or model name (an exact name wins)."""
        name = self.by_model_name(model)
        if name is None and model in TIERS:
            name = self.first_of_tier(model)
            if name is None:
                raise UnknownModel(f"no backend serves tier {model!r}", param="model")
        if name is None:
            known = {AUTO_MODEL, *TIERS, *self.backends, *(b.model for b in self.backends.values())}
            raise UnknownModel(f"model {model!r} not found; available: {sorted(known)}", param="model")
        decision = Decision(tier=self.backends[name].tier, policy="forced", threshold=math.nan,
                            reason=f"model={model}")
        return Plan(chain=(name,), decision=decision)

    def routed(self, decision: Decision) -> Plan:
        """The plan for the router's ``decision``: explore, then the served tier and its fallback."""
        tier, explored, propensity = self._explore(decision.tier)
        other = next(t for t in TIERS if t != tier)
        primary = self.first_of_tier(tier)
        if primary is None:  # e.g. an edge-only deployment
            primary = self.first_of_tier(other)
            decision = replace(decision, scores={**decision.scores, "tier_unavailable": 1.0})
        chain = [primary]
        secondary = self.first_of_tier(other)
        if self.fallback and secondary and secondary != primary:
            chain.append(secondary)
        return Plan(chain=tuple(c for c in chain if c), decision=decision, explore=explored, propensity=propensity)

    def _explore(self, tier: str) -> tuple[str, bool, float]:
        """With probability ``explore`` serve a uniformly random tier (of those with a backend)."""
        eps = self.explore
        tiers = [t for t in TIERS if self.first_of_tier(t) is not None]
        if eps <= 0 or len(tiers) < 2 or tier not in tiers:
            return tier, False, 1.0
        explored = self.rng.random() < eps
        served = self.rng.choice(tiers) if explored else tier
        propensity = (1 - eps) * (served == tier) + eps / len(tiers)
        return served, explored, propensity
