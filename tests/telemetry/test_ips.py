"""Importance weighting of logged outcomes: the weights, the SNIPS estimate, and a router retrained from
a decision log whose decisions the weights change.

A decision log knows only the served tier's outcome, and under exploration how likely that tier was
to be served (its propensity). Here the log is written through ``DecisionLog`` (real SQLite) so that
the naive and the importance-weighted estimates of the edge's quality disagree: where the old router
picked the edge (propensity 0.75) the edge was wrong; where exploration sent a query there
(propensity 0.25) it was right. Weighted, the edge is right 75% of the time and beats the cloud's
62.5%; unweighted it is right 50% of the time and loses. Every figure asserted is worked out by hand
in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest

from vlrouter.eval.dataset import import_decision_log
from vlrouter.features.spec import FeatureSpec
from vlrouter.router.scenario import PRESETS
from vlrouter.router.train import TrainConfig, train_router
from vlrouter.router.utility import Outcomes, UtilityRefs
from vlrouter.telemetry.decision_log import DecisionLog
from vlrouter.telemetry.record import DecisionRecord

EDGE, CLOUD = 0, 1
QUALITY_ONLY = np.array([0.0, 1.0, 0.0])


def outcomes(quality, observed, propensity) -> Outcomes:
    """Two models (edge, cloud) with equal, zero costs: utility is ``w_quality * quality``."""
    q = np.array(quality, float)
    zeros = np.zeros_like(q)
    return Outcomes(q, zeros, zeros, zeros, UtilityRefs(1.0, 1.0, "latency", "energy"),
                    np.array(observed, bool), None if propensity is None else np.array(propensity, float))


def test_row_weights_are_clipped_inverse_propensities():
    o = outcomes([[1, 0]] * 5, [[True, False]] * 5, [0.25, 0.75, 1.0, 0.01, 0.0])
    assert o.row_weights() == pytest.approx([4.0, 4 / 3, 1.0, 20.0, 20.0])  # clipped at 20
    assert o.row_weights(clip=50) == pytest.approx([4.0, 4 / 3, 1.0, 50.0, 50.0])
    assert outcomes([[1, 0]], [[True, False]], None).row_weights().tolist() == [1.0]


def test_refs_round_trip_as_a_dict():  # how a checkpoint stores them
    refs = UtilityRefs(2.5, 40.0, "latency", "cost")
    assert refs.to_dict() == {"lat_ref": 2.5, "energy_ref": 40.0, "lat_source": "latency", "energy_source": "cost"}
    assert UtilityRefs(**refs.to_dict()) == refs


def test_snips_estimate_by_hand():
    # q0, q1 served by the edge (right, wrong); q2, q3 by the cloud (both right)
    o = outcomes([[1, 0.3], [0, 0.3], [0.3, 1], [0.3, 1]],
                 [[True, False], [True, False], [False, True], [False, True]], [0.25, 0.75, 0.75, 0.25])
    idx = np.arange(4)
    # always edge: only q0, q1 count, weighted 4 and 4/3 -> (4 * 1 + 4/3 * 0) / (4 + 4/3) = 0.75 (naive: 0.5)
    assert o.value(np.array([EDGE] * 4), idx, QUALITY_ONLY) == pytest.approx(0.75)
    # edge for q0, q1 and cloud for q2, q3: (4 + 0 + 4/3 + 4) / (4 + 4/3 + 4/3 + 4) = 0.875 (naive: 0.75)
    mixed = np.array([EDGE, EDGE, CLOUD, CLOUD])
    assert o.value(mixed, idx, QUALITY_ONLY) == pytest.approx(0.875)
    assert o.summary(mixed, idx, QUALITY_ONLY, np.array(["edge", "cloud"]))["quality"] == pytest.approx(0.875)
    # scaled utility: w_quality 0.5 halves it
    assert o.value(mixed, idx, np.array([0.0, 0.5, 0.0])) == pytest.approx(0.4375)
    # a policy that never picks a served model has no estimate
    assert np.isnan(o.value(np.array([CLOUD, CLOUD, EDGE, EDGE]), idx, QUALITY_ONLY))
    # full labels: a plain mean, weights or not
    full = outcomes([[1, 0], [0, 1]], [[True, True], [True, True]], [0.25, 0.75])
    assert not full.partial and full.value(np.array([EDGE, EDGE]), np.arange(2), QUALITY_ONLY) == 0.5


def write_log(path, n: int = 40) -> list[tuple[str, float, float]]:
    """``4 n`` answered, scored rows (tier, propensity, score): per block of four, the edge explored
    (0.25, right), the edge chosen (0.75, wrong), and the cloud chosen (0.75) and explored (0.25),
    right in 5 of 8 in both arms. Equal latency and energy, so only quality tells the tiers apart."""
    log = DecisionLog(path, log_content=True)
    plan = []
    for i in range(n):
        cloud_score = 1.0 if i % 8 < 5 else 0.0  # right in 5 of 8, whether chosen or explored
        plan += [("edge", 0.25, 1.0), ("edge", 0.75, 0.0), ("cloud", 0.75, cloud_score), ("cloud", 0.25, cloud_score)]
    for k, (tier, propensity, score) in enumerate(plan):
        rid = f"ips-{k}"
        log.record(DecisionRecord(
            request_id=rid, endpoint="infer", model_requested="vlrouter-auto", scenario_name="quality",
            w_speed=0.1, w_quality=0.8, w_energy=0.1, policy="complexity-rule", tier=tier, backend=tier,
            decided_tier=tier if propensity == 0.75 else ("cloud" if tier == "edge" else "edge"),
            explore=int(propensity == 0.25), propensity=propensity, e2e_ms=100.0, energy_j=1.0, status=200,
            content={"messages": [{"role": "user", "text": f"question {k}", "images": []}]}))
        log.add_feedback(rid, score)
    log.close()
    return plan


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    path = tmp_path_factory.mktemp("ips") / "decisions.db"
    return path, write_log(path)


def test_the_imported_log_carries_the_logged_propensities_as_weights(logged):
    path, plan = logged
    ds = import_decision_log(path)
    assert [m.name for m in ds.models] == ["cloud", "edge"] and len(ds.queries) == len(plan)  # by tier
    by_id = {f"ips-{k}": p for k, p in enumerate(plan)}
    expected = np.array([by_id[q.id][1] for q in ds.queries])
    assert ds.propensity == pytest.approx(expected)
    o = Outcomes.from_dataset(ds, np.arange(len(ds.queries)))
    assert o.partial and o.row_weights() == pytest.approx(1 / expected)
    idx = np.arange(len(ds.queries))
    edge, cloud = np.full(len(idx), 1), np.full(len(idx), 0)  # column indices: models are [cloud, edge]
    assert o.value(edge, idx, QUALITY_ONLY) == pytest.approx(0.75)
    assert o.value(cloud, idx, QUALITY_ONLY) == pytest.approx(0.625)
    naive = Outcomes(o.quality, o.latency, o.energy, o.cost, o.refs, o.observed, None)
    assert naive.value(edge, idx, QUALITY_ONLY) == pytest.approx(0.5)


def retrain(ds, weighted: bool):
    """A router trained on the log; the features carry no information (one constant signal), so
    what it learns of each tier is the (weighted) mean outcome."""
    n = len(ds.queries)
    X = np.zeros((n, 1), np.float32)
    o = Outcomes.from_dataset(ds, np.arange(n))
    if not weighted:
        o = Outcomes(o.quality, o.latency, o.energy, o.cost, o.refs, o.observed, None)
    block = np.array([int(q.id.split("-")[1]) // 4 for q in ds.queries])  # write_log's blocks of four
    train, dev = np.flatnonzero(block < 32), np.flatnonzero(block >= 32)  # both hold whole periods of 8 blocks
    spec = FeatureSpec(image_encoder=None, image_dim=0, text_encoder=None, text_dim=0, signals=("constant",))
    cfg = TrainConfig(hidden=(16, 16), dropout=0.0, lr=1e-2, max_epochs=150, patience=40, calibration_folds=0,
                      ensemble=False, group_dropout=0.0, seed=0)
    router, _ = train_router(X, o, train, dev, spec=spec, models=ds.model_dicts, config=cfg, progress=False)
    return router, X


def test_a_router_retrained_from_the_log_follows_the_weighted_estimate(logged):
    path, _ = logged
    ds = import_decision_log(path)
    weighted, X = retrain(ds, weighted=True)
    naive, _ = retrain(ds, weighted=False)
    w = np.array(PRESETS["quality"])
    edge, cloud = 1, 0  # models are [cloud, edge]
    q_weighted = weighted.predict(X[:1], w).quality[0]
    q_naive = naive.predict(X[:1], w).quality[0]
    assert q_weighted[edge] == pytest.approx(0.75, abs=0.08)  # the IPS-weighted mean of the edge's scores
    assert q_naive[edge] == pytest.approx(0.5, abs=0.08)  # the plain mean
    assert q_weighted[cloud] == pytest.approx(0.625, abs=0.08) and q_naive[cloud] == pytest.approx(0.625, abs=0.08)
    tiers = weighted.tiers
    chose_weighted = tiers[weighted.choose(weighted.predict(X, w), weighted.thresholds["quality"])]
    chose_naive = tiers[naive.choose(naive.predict(X, w), naive.thresholds["quality"])]
    assert (chose_weighted == "edge").all()  # the weights move every quality decision to the edge
    assert (chose_naive == "cloud").all()
