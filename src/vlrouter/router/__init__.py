"""Routing: scenario vectors, the router contract, its policies and the one factory that builds them."""

from vlrouter.router.base import Decision, Router, RoutingInput
from vlrouter.router.factory import ROUTERS, build_router, router_from_settings
from vlrouter.router.scenario import PRESETS, Scenario, ScenarioError, parse_scenario

__all__ = [
    "PRESETS", "ROUTERS", "Decision", "Router", "RoutingInput", "Scenario", "ScenarioError",
    "build_router", "parse_scenario", "router_from_settings",
]
