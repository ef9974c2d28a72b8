"""router.risk on four held-out queries worked by hand: the walk's choices, bounds and reductions, every
status, the checkpoint round trip. (``test_risk.py`` checks the guarantee on simulated data.)

The example: an edge model predicted good on queries 0 and 2 (0.9) and poor on 1 and 3 (0.1), a cloud
model predicted 0.95 everywhere and one unit slower. Under w = (1, 0.01, 0) the walk's quality
multiplier lambda chooses the cloud everywhere above 20, the edge on queries 0 and 2 between 1/0.85
and 20 (where lambda * 0.05 < 1), and the edge everywhere below 1/0.85. Realised quality: the edge
answers 0 and 2 (0.5 each), the cloud all four (0.5 each): the reference is the cloud, mean 0.5.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest

from vlrouter.router.mlp import Prediction
from vlrouter.router.risk import DELTA, GRID, LAMBDA_MAX, REFERENCE_OFFSET, CalibrationSet, FloorFit

W = np.array([1.0, 0.01, 0.0])
Q_PRED = np.array([[0.9, 0.95], [0.1, 0.95], [0.9, 0.95], [0.1, 0.95]])
QUALITY = np.array([[0.5, 0.5], [0.0, 0.5], [0.5, 0.5], [0.0, 0.5]])
LATENCY = np.tile([0.2, 1.0], (4, 1))
ENERGY = np.tile([0.1, 0.5], (4, 1))


def example(**kw) -> CalibrationSet:
    pred = Prediction(probs=np.full((4, 2), 0.5), quality=Q_PRED, latency=np.tile([0.0, 1.0], (4, 1)),
                      energy=np.zeros((4, 2)), w=np.tile(W, (4, 1)))
    return CalibrationSet.build(pred, QUALITY, LATENCY, kw.pop("energy", ENERGY), ["edge", "cloud"], **kw)


def test_build_takes_the_strongest_model_as_reference_and_keeps_the_arrays():
    cal = example()
    assert cal.ref == 1 and cal.certified is True and cal.delta == DELTA
    assert cal.q_pred is Q_PRED and cal.quality is QUALITY and cal.latency is LATENCY and cal.energy is ENERGY
    assert cal.lat_pred.tolist() == [[0.0, 1.0]] * 4 and not cal.e_pred.any()
    assert cal.tiers.tolist() == ["edge", "cloud"] and isinstance(cal.tiers, np.ndarray)
    assert example(certified=False).certified is False
    flipped = CalibrationSet.build(SimpleNamespace(quality=Q_PRED, latency=LATENCY, energy=ENERGY), QUALITY[:, ::-1],
                                   LATENCY, ENERGY, ["cloud", "edge"])
    assert flipped.ref == 0


def test_at_least_two_held_out_queries():
    CalibrationSet(*(np.zeros((2, 2)),) * 6, tiers=np.array(["edge", "cloud"]), ref=1)
    with pytest.raises(ValueError, match="at least 2 held-out queries"):
        CalibrationSet(*(np.zeros((1, 2)),) * 6, tiers=np.array(["edge", "cloud"]), ref=1)


def test_the_checkpoint_round_trip_keeps_arrays_reference_status_and_delta():
    cal = example(certified=False)
    cal.delta = 0.1
    tensors = cal.tensors()
    assert sorted(tensors) == sorted(f"calibration.{k}" for k in
                                     ("q_pred", "lat_pred", "e_pred", "quality", "latency", "energy"))
    assert all(t.dtype == np.float32 and t.flags.c_contiguous for t in tensors.values())
    meta = cal.meta()
    assert meta == {"n": 4, "reference": 1, "certified": False, "delta": 0.1, "method": meta["method"]}
    assert "Learn-then-Test" in meta["method"] and "at delta 0.1" in meta["method"]
    back = CalibrationSet.from_tensors(tensors, meta, ["edge", "cloud"])
    assert back.ref == 1 and back.certified is False and back.delta == 0.1 and back.q_pred.dtype == np.float64
    for k in ("q_pred", "lat_pred", "e_pred", "quality", "latency", "energy"):
        np.testing.assert_allclose(getattr(back, k), getattr(cal, k), rtol=1e-6)
    old = CalibrationSet.from_tensors(tensors, {"reference": 1}, ["edge", "cloud"])  # written before both keys
    assert old.certified is True and old.delta == DELTA


def test_lambdas_run_from_quality_only_down_to_the_scenarios_own_weight():
    cal = example()
    lams = cal.lambdas(0.5)
    assert len(lams) == GRID and lams[0] == pytest.approx(LAMBDA_MAX) and lams[-1] == pytest.approx(0.5)
    assert np.allclose(lams[1:] / lams[:-1], (0.5 / LAMBDA_MAX) ** (1 / (GRID - 1)))  # geometric, descending
    assert cal.lambdas(0.0)[-1] == pytest.approx(1e-3)
    assert cal.lambdas(LAMBDA_MAX).tolist() == [LAMBDA_MAX] and cal.lambdas(2e4).tolist() == [2e4]


def test_a_floor_the_mixed_choice_keeps_is_certified_with_its_figures():
    fit = example().fit(W, 0.9)
    lams = example().lambdas(W[1])
    lam = lams[lams > 1 / 0.85].min()  # the last multiplier at which queries 1 and 3 still go to the cloud
    assert fit.status == "certified" and fit.n == 4 and fit.floor == 0.9
    assert fit.edge_share == 0.5 and fit.retention == 1.0 and fit.retention_low == 1.0
    assert fit.latency_reduction == pytest.approx(1 - 0.6) and fit.energy_reduction == pytest.approx(1 - 0.3 / 0.5)
    total = W[0] + lam + W[2]
    assert fit.weights == pytest.approx((W[0] / total, lam / total, W[2] / total))  # no per-model offsets


def test_a_floor_all_edge_keeps_is_all_edge_with_the_delta_method_bound():
    fit = example().fit(W, 0.02)
    # all edge: retention 0.25 / 0.5; per-query 0.5 * (q - 0.5 q_ref) = +-0.25, sd 0.2887, se 0.2887 / 2 / 0.5
    se = np.std([0.25, -0.25, 0.25, -0.25], ddof=1) / math.sqrt(4) / 0.5
    assert fit.status == "all-edge" and fit.edge_share == 1.0 and fit.retention == pytest.approx(0.5)
    assert fit.retention_low == pytest.approx(0.5 - NormalDist().inv_cdf(0.95) * se)
    assert fit.latency_reduction == pytest.approx(0.8) and fit.energy_reduction == pytest.approx(0.8)
    assert fit.weights == pytest.approx((1 / 1.01, 0.01 / 1.01, 0.0))  # the scenario's own weights


def test_a_floor_nothing_certifies_sends_every_query_to_the_reference():
    fit = example().fit(W, 1.01)
    assert fit.status == "reference" and fit.edge_share == 0.0 and fit.retention == fit.retention_low == 1.0
    assert fit.latency_reduction == 0.0 and fit.energy_reduction == 0.0 and fit.n == 4
    assert fit.weights == pytest.approx((1 / 1.01, 0.01 / 1.01, 0.0, 0.0, REFERENCE_OFFSET))


def test_partial_labels_are_uncertified_and_a_reference_without_energy_has_no_reduction():
    cal = example(certified=False, energy=np.tile([0.1, 0.0], (4, 1)))
    fit = cal.fit(W, 0.9)
    assert fit.status == "uncertified" and fit.edge_share == 0.5 and math.isnan(fit.energy_reduction)
    assert fit.latency_reduction == pytest.approx(0.4)


def test_the_references_tier_answers_with_the_reference_alone():
    q_pred = np.hstack([Q_PRED, np.full((4, 1), 0.99)])  # a cheaper cloud model predicted even better
    quality = np.hstack([QUALITY, np.full((4, 1), 0.25)])
    lat = np.hstack([LATENCY, np.full((4, 1), 0.5)])
    cal = CalibrationSet(q_pred, lat, lat, quality, lat, lat, np.array(["edge", "cloud", "cloud"]), ref=1)
    assert cal.tier_offsets().tolist() == [0.0, 0.0, -REFERENCE_OFFSET]
    fit = cal.fit(W, 0.9)
    assert fit.status == "certified" and fit.retention == 1.0  # the cheaper cloud model is never chosen
    assert fit.weights[3:] == (0.0, 0.0, -REFERENCE_OFFSET)


def test_fits_are_cached_per_weights_and_floor():
    cal = example()
    first = cal.fit(W, 0.9)
    assert cal.fit(W.tolist(), 0.9) is first and cal.fit(W + 1e-7, 0.9) is first  # rounded to 4 places
    other = cal.fit(W, 0.02)
    assert other.status == "all-edge" and len(cal._walks) == 1  # one walk serves every floor


def test_as_dict_rounds_floats_and_keeps_non_finite_ones():
    fit = FloorFit(weights=(0.123456789, 1.0), floor=0.9, status="certified", edge_share=1 / 3,
                   retention=float("nan"), retention_low=0.5, latency_reduction=float("inf"), energy_reduction=0.25,
                   n=7)
    d = fit.as_dict()
    assert d["weights"] == [0.12346, 1.0] and d["edge_share"] == 0.33333 and d["n"] == 7
    assert math.isnan(d["retention"]) and d["latency_reduction"] == float("inf") and d["status"] == "certified"


def test_when_only_quality_only_passes_it_is_used_not_the_reference():
    # query 0's edge is predicted a hair below the cloud: the cloud at lambda = 1e4, the edge (which
    # then answers wrongly) from the grid's second step on, so the walk passes once and stops
    q_pred = np.array([[0.95 - 1 / 9500, 0.95], [0.1, 0.95], [0.1, 0.95], [0.1, 0.95]])
    quality = np.tile([0.0, 0.5], (4, 1))
    cost = np.tile([0.0, 1.0], (4, 1))
    cal = CalibrationSet(q_pred, cost, np.zeros((4, 2)), quality, cost, cost, np.array(["edge", "cloud"]), ref=1)
    w = np.array([1.0, 0.01, 0.5])
    assert cal.lambdas(w[1])[1] < 9500 < LAMBDA_MAX
    fit = cal.fit(w, 0.9)
    total = w[0] + LAMBDA_MAX + w[2]
    assert fit.status == "certified" and fit.edge_share == 0.0 and fit.retention == 1.0
    assert fit.weights == pytest.approx((w[0] / total, LAMBDA_MAX / total, w[2] / total))


def test_a_floor_equal_to_the_bound_holds_and_other_weights_get_their_own_fit():
    cal = example()
    exact = cal.fit(W, 1.0)  # the mixed choice's bound is exactly 1: not below the floor
    assert exact.status == "certified" and exact.edge_share == 0.5
    reference = cal.fit(W, 1.01)
    assert reference.floor == 1.01 and reference.status == "reference"
    other = cal.fit((0.0, 1.0, 0.0), 0.9)  # quality only: nothing to gain at the edge
    assert other.status == "certified" and other.edge_share == 0.0 and other != exact
    assert len(cal._walks) == 2


def test_ratio_and_its_interval_worked_by_hand():
    from vlrouter.router.risk import ratio_interval, ratio_se

    num, den = np.array([1.0, 0.0, 1.0, 0.0]), np.array([3.0, 1.0, 2.0, 2.0])
    r, se = ratio_se(num, den)
    # r = 0.5 / 2; the residuals num - r * den are 0.25, -0.25, 0.5, -0.5, se = sd / sqrt(4) / mean(den)
    assert r == 0.25 and se == pytest.approx(np.std([0.25, -0.25, 0.5, -0.5], ddof=1) / 2 / 2)
    assert ratio_interval(num, den) == pytest.approx((0.25, 0.25 - 1.96 * se, 0.25 + 1.96 * se))
    assert ratio_se(num[:2], den[:2])[0] == 0.25  # two queries are enough
    for bad in ((num[:1], den[:1]), (num, np.zeros(4)), (num, -den), (np.array([]), np.array([]))):
        assert all(math.isnan(v) for v in ratio_se(*bad))


def test_weights_that_round_alike_to_integers_still_get_their_own_fit():
    cal = example()
    a, b = cal.fit((0.6, 0.3, 0.1), 0.9), cal.fit((0.7, 0.2, 0.1), 0.9)  # cached by weights to 4 places
    assert a.weights != b.weights and len(cal._walks) == 2
