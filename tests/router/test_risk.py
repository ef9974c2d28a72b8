"""Quality floors under risk control (router.risk) on simulated outcomes whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from vlrouter.router.risk import CalibrationSet, ratio_interval
from vlrouter.router.scenario import FLOORS, ScenarioError, default_floor, parse_scenario

TIERS = np.array(["edge", "cloud"])
FAST = np.array([0.6, 0.3, 0.1])


def simulate(n: int, rng: np.random.Generator, *, noise: float = 0.15):
    """Two models: P(correct) of the edge varies per query (0.05-0.95), the cloud's is 0.87; the router's
    predictions are the true probabilities plus noise; the edge is 5x cheaper and faster."""
    p_edge = rng.uniform(0.05, 0.95, n)
    p = np.stack([p_edge, np.full(n, 0.87)], axis=1)
    q_pred = np.clip(p + rng.normal(0, noise, p.shape), 0, 1)
    outcome = (rng.random(p.shape) < p).astype(float)
    cost = np.tile([0.2, 1.0], (n, 1))
    return p, q_pred, outcome, cost


def calibration(n: int, seed: int, **kw) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    _, q_pred, outcome, cost = simulate(n, rng, **kw)
    return CalibrationSet(q_pred, cost, cost, outcome, cost, cost, TIERS, ref=1)


def realised_retention(cal: CalibrationSet, w, floor: float, seed: int, n: int = 20000) -> float:
    """The fitted operating point applied to fresh queries: expected quality kept vs all-cloud."""
    fit = cal.fit(w, floor)
    p, q_pred, _, cost = simulate(n, np.random.default_rng(seed))
    w = np.array(fit.weights)
    chosen = (w[1] * q_pred - w[0] * cost - w[2] * cost).argmax(1)
    return float(p[np.arange(n), chosen].mean() / p[:, 1].mean())


def test_the_floor_holds_on_new_data_at_the_stated_confidence():
    misses, shares = 0, []
    for seed in range(30):
        cal = calibration(800, seed)
        fit = cal.fit(FAST, 0.9)
        assert fit.status == "certified" and fit.retention_low >= 0.9
        shares.append(fit.edge_share)
        misses += realised_retention(cal, FAST, 0.9, seed + 1000) < 0.9
    assert misses <= 3, misses  # delta = 0.05: about 1.5 misses in 30 expected; 3 leaves room for noise
    assert 0.15 < np.mean(shares) < 0.6  # a real routing decision, neither all-cloud nor all-edge


def test_fast_without_a_floor_would_send_everything_to_the_edge_and_lose_quality():
    cal = calibration(800, 0)
    unconstrained = cal.fit(FAST, 0.01)  # a floor that never binds: the scenario's own utility
    assert unconstrained.edge_share == 1.0 and unconstrained.status == "all-edge"
    assert unconstrained.retention < 0.7
    assert cal.fit(FAST, 0.9).edge_share < 1.0


def test_a_higher_floor_never_sends_more_to_the_edge():
    cal = calibration(800, 1)
    fits = [cal.fit(FAST, f) for f in (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)]
    shares = [f.edge_share for f in fits]
    weights = [f.weights[1] for f in fits if f.status != "reference"]
    assert shares == sorted(shares, reverse=True) and shares[0] > shares[-1]
    assert weights == sorted(weights)  # the quality weight only rises with the floor (then: the reference)
    assert [f.status == "reference" for f in fits] == sorted(f.status == "reference" for f in fits)
    assert all(f.retention_low >= f.floor for f in fits if f.status == "certified")


def test_statuses_all_edge_and_reference():
    rng = np.random.default_rng(2)
    n = 600
    same = (rng.random((n, 1)) < 0.8).astype(float)
    outcome = np.hstack([same, same])  # the edge is exactly as good as the cloud
    cost = np.tile([0.2, 1.0], (n, 1))
    cal = CalibrationSet(np.full((n, 2), 0.8), cost, cost, outcome, cost, cost, TIERS, ref=1)
    fit = cal.fit(FAST, 0.95)
    assert fit.status == "all-edge" and fit.edge_share == 1.0
    cal = calibration(600, 3)
    ref = cal.fit(FAST, 1.0)  # a lower bound >= 1 on noisy outcomes: only the reference model itself keeps 100%
    assert ref.status == "reference" and ref.retention == 1.0 and ref.edge_share == 0.0
    w = np.array(ref.weights)
    assert len(w) == 3 + 2 and w[3:].argmax() == cal.ref  # a utility offset sends every query to it
    cost = np.tile([0.2, 1.0], (5, 1))
    assert ((w[1] * cal.q_pred[:5] - w[0] * cost - w[2] * cost + w[3:]).argmax(1) == cal.ref).all()


def test_partial_labels_are_marked_uncertified():
    cal = calibration(600, 4)
    cal.certified = False
    assert cal.fit(FAST, 0.9).status == "uncertified"


def test_tensors_round_trip():
    cal = calibration(300, 5)
    back = CalibrationSet.from_tensors(cal.tensors(), cal.meta(), TIERS)
    assert back.fit(FAST, 0.9).as_dict() == cal.fit(FAST, 0.9).as_dict()


def test_ratio_interval_covers_a_known_ratio():
    rng = np.random.default_rng(6)
    covered = 0
    for _ in range(200):
        num, den = rng.random(400) < 0.6, rng.random(400) < 0.8
        _, low, high = ratio_interval(num.astype(float), den.astype(float))
        covered += low <= 0.75 <= high
    assert covered >= 180  # nominal 95%: 190 of 200


def test_scenario_floors_parse_and_refuse():
    assert FLOORS == {"fast": 0.9, "quality": 0.98, "energy": 0.9}
    assert default_floor(0.3) == 0.9 and default_floor(0.8) == 0.98 and default_floor(0.0) == 0.852
    assert parse_scenario("fast").floor == 0.9 and parse_scenario("fast").min_quality is None
    assert parse_scenario("fast;min_quality=0.95").floor == 0.95
    assert parse_scenario("speed=1,quality=1,min_quality=0.8").floor == 0.8
    assert parse_scenario({"name": "energy", "min_quality": 0.7}).name == "energy"
    assert parse_scenario({"quality": 1, "speed": 1}).floor == pytest.approx(default_floor(0.5))
    for bad in ("fast;min_quality=1.5", "fast;min_quality=0", "fast;floor=0.9", {"speed": 1, "min_quality": "hi"}):
        with pytest.raises(ScenarioError) as err:
            parse_scenario(bad)
        assert err.value.status == 400
