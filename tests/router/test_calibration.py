"""Tau selection on a sweep curve: closest edge share, or best quality within an energy budget."""

from __future__ import annotations

import pytest

from vlrouter.router.calibration import InfeasibleBudget, select_threshold

CURVE = [  # as sweep() returns it: edge share rises with tau, quality and energy fall
    {"tau": -0.2, "edge_share": 0.0, "energy": 9.0, "quality": 0.90},
    {"tau": 0.0, "edge_share": 0.4, "energy": 6.0, "quality": 0.85},
    {"tau": 0.1, "edge_share": 0.6, "energy": 4.0, "quality": 0.85},
    {"tau": 0.2, "edge_share": 0.8, "energy": 2.5, "quality": 0.70},
    {"tau": 0.4, "edge_share": 1.0, "energy": 1.0, "quality": 0.50},
]


def test_target_edge_share_picks_the_closest_point():
    assert select_threshold(CURVE, target_edge_share=0.75)["tau"] == 0.2
    assert select_threshold(CURVE, target_edge_share=0.0)["tau"] == -0.2
    # equally close: the higher-quality point wins
    tied = [{"tau": 0.0, "edge_share": 0.4, "energy": 1, "quality": 0.6},
            {"tau": 1.0, "edge_share": 0.6, "energy": 1, "quality": 0.7}]
    assert select_threshold(tied, target_edge_share=0.5)["tau"] == 1.0


def test_energy_budget_picks_the_best_quality_within_it():
    # 0.0 and 0.1 both reach quality 0.85 within 6 J: the one that keeps more on the edge wins
    assert select_threshold(CURVE, energy_budget=6.0)["tau"] == 0.1
    assert select_threshold(CURVE, energy_budget=3.0)["tau"] == 0.2
    assert select_threshold(CURVE, energy_budget=100.0)["tau"] == -0.2


def test_an_infeasible_budget_says_what_the_curve_can_do():
    with pytest.raises(InfeasibleBudget, match="lowest mean is 1") as info:
        select_threshold(CURVE, energy_budget=0.5)
    assert info.value.lowest == 1.0 and info.value.budget == 0.5
    assert isinstance(info.value, ValueError)


def test_exactly_one_goal():
    with pytest.raises(ValueError, match="exactly one"):
        select_threshold(CURVE)
    with pytest.raises(ValueError, match="exactly one"):
        select_threshold(CURVE, target_edge_share=0.5, energy_budget=1.0)
