"""Routing: scenario vectors, the router contract and its policies."""

from vlrouter.router import rules as _rules  # noqa: F401  (registers the baseline policy)
from vlrouter.router.base import ROUTERS, Decision, Router, RoutingInput, build_router
from vlrouter.router.scenario import PRESETS, Scenario, ScenarioError, parse_scenario

__all__ = [
    "PRESETS", "ROUTERS", "Decision", "Router", "RoutingInput", "Scenario", "ScenarioError",
    "build_router", "parse_scenario",
]
