"""Threshold selection: pick one point of a router's tau sweep for an edge-share or energy goal.

Pure functions over the curve that ``vlrouter.eval.evaluate.sweep`` returns (dicts with ``tau``,
``edge_share``, ``energy`` and ``quality``); ``vlrouter calibrate`` writes the chosen tau.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlrouter.router.scenario import PRESETS


class InfeasibleBudget(ValueError):
    """No point of the curve keeps its mean energy within the budget; ``lowest`` is the best the curve does."""

    def __init__(self, budget: float, lowest: float):
        super().__init__(f"no threshold meets it (lowest mean is {lowest:.4g})")
        self.budget, self.lowest = budget, lowest


def select_threshold(curve: Sequence[dict], *, target_edge_share: float | None = None,
                     energy_budget: float | None = None) -> dict:
    """The curve point whose edge share is closest to ``target_edge_share`` (ties: higher quality),
    or else the best-quality point (ties: more edge) whose mean energy is within ``energy_budget``.

    Exactly one goal must be given; raises ``InfeasibleBudget`` when no point meets the budget.
    """
    if (target_edge_share is None) == (energy_budget is None):
        raise ValueError("give exactly one of target_edge_share or energy_budget")
    if not curve:
        raise ValueError("the sweep curve is empty")
    if target_edge_share is not None:
        return min(curve, key=lambda p: (abs(p["edge_share"] - target_edge_share), -p["quality"]))
    feasible = [p for p in curve if p["energy"] <= energy_budget]
    if not feasible:
        raise InfeasibleBudget(energy_budget, min(p["energy"] for p in curve))
    return max(feasible, key=lambda p: (p["quality"], p["edge_share"]))


def corner_taus(preset_taus: dict[str, float]) -> np.ndarray:
    """Per-corner taus t such that w_preset . t = tau_preset for the three presets (how a checkpoint
    without held-out predictions gives custom weights a tau: linear in w)."""
    names = ("fast", "quality", "energy")
    return np.linalg.solve(np.array([PRESETS[n] for n in names]), np.array([preset_taus[n] for n in names]))
