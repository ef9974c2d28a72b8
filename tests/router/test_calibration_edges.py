"""Tau selection at its edges (from the mutation check's survivors): a budget met exactly is met, and
the two misuse errors say exactly what is wrong."""

from __future__ import annotations

import pytest

from tests.router.test_calibration import CURVE
from vlrouter.router.calibration import select_threshold


def test_a_point_exactly_at_the_budget_is_within_it():
    assert select_threshold(CURVE, energy_budget=2.5)["tau"] == 0.2  # 2.5 J: within, quality 0.70
    assert select_threshold(CURVE, energy_budget=2.4999)["tau"] == 0.4  # just under: only the 1 J point


def test_misuse_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"^give exactly one of target_edge_share or energy_budget$"):
        select_threshold(CURVE, target_edge_share=0.5, energy_budget=1.0)
    with pytest.raises(ValueError, match=r"^the sweep curve is empty$"):
        select_threshold([], target_edge_share=0.5)


def test_corner_taus_reproduce_each_presets_tau():
    import numpy as np

    from vlrouter.router.calibration import corner_taus
    from vlrouter.router.scenario import PRESETS

    taus = {"fast": 0.2, "quality": -0.1, "energy": 0.35}
    t = corner_taus(taus)
    assert t.shape == (3,)
    for name, w in PRESETS.items():  # tau(w) = w . t is exact at the three presets
        assert float(np.dot(w, t)) == pytest.approx(taus[name])
    assert corner_taus({"fast": 0.5, "quality": 0.5, "energy": 0.5}) == pytest.approx([0.5] * 3)  # weights sum to 1
