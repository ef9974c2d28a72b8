"""The scenario utility on hand-built outcome tables: the formula, the fill of missing outcomes, the
references, and the summary a policy gets (written for the mutation check's survivors; every
expected number is worked out in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from vlrouter.eval.dataset import ModelInfo, Query, RoutingDataset
from vlrouter.router.utility import Outcomes, UtilityRefs

NAN = np.nan
TIERS = np.array(["edge", "cloud"])


def dataset(cost=None, latency=None, energy=None, propensity=None) -> RoutingDataset:
    """Three queries, an edge and a cloud model; the edge's quality for q2 is unknown."""
    quality = np.array([[1.0, 1.0], [0.0, 1.0], [NAN, 0.0]])
    blank = np.full_like(quality, NAN)
    queries = [Query(f"q{i}", "t", None, "train", {} if propensity is None else {"propensity": propensity[i]})
               for i in range(3)]
    return RoutingDataset([ModelInfo("e", "edge"), ModelInfo("c", "cloud")], queries, quality,
                          blank.copy() if cost is None else np.array(cost, float),
                          blank.copy() if latency is None else np.array(latency, float),
                          blank.copy() if energy is None else np.array(energy, float))


def test_missing_outcomes_are_the_model_mean_and_the_refs_the_overall_mean():
    o = Outcomes.from_dataset(dataset(latency=[[1, 3], [NAN, 5], [2, 4]], energy=[[2, 6], [4, 6], [3, 6]]),
                              np.arange(3))
    assert o.quality[2, 0] == 0.5  # the edge's mean over q0, q1
    assert o.latency[1, 0] == 1.5  # the edge's mean latency over q0, q2
    assert o.observed.tolist() == [[True, True], [True, True], [False, True]] and o.partial
    assert o.refs == UtilityRefs(lat_ref=16.5 / 6, energy_ref=27 / 6, lat_source="latency", energy_source="energy")
    assert o.cost.tolist() == [[0, 0]] * 3  # no cost column: zeros
    assert o.propensity is None and o.row_weights().tolist() == [1.0, 1.0, 1.0]


def test_without_latency_or_energy_cost_stands_in_for_both():
    o = Outcomes.from_dataset(dataset(cost=[[1, 3], [1, 3], [1, NAN]]), np.array([0, 1]))
    assert o.cost[2, 1] == 3.0 and (o.latency == o.cost).all() and (o.energy == o.cost).all()
    assert o.refs == UtilityRefs(lat_ref=2.0, energy_ref=2.0, lat_source="cost", energy_source="cost")
    zero = Outcomes.from_dataset(dataset(cost=[[0, 0]] * 3), np.arange(3))
    assert (zero.refs.lat_ref, zero.refs.energy_ref) == (1.0, 1.0)  # an all-zero cost still divides by 1


def test_the_utility_formula_for_one_and_for_per_query_weights():
    o = Outcomes.from_dataset(dataset(latency=[[1, 3]] * 3, energy=[[2, 6]] * 3), np.arange(3))
    # lat_ref = 2, energy_ref = 4: U = wq q - ws lat / 2 - we e / 4
    u = o.utility(np.array([0.2, 0.5, 0.3]))
    assert u[0] == pytest.approx([0.5 - 0.1 - 0.15, 0.5 - 0.3 - 0.45])
    per_query = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert o.utility(per_query, np.array([0, 1])) == pytest.approx(np.array([[-0.5, -1.5], [0.0, 1.0]]))
    assert o.utility(np.array([0, 1.0, 0]), np.array([1]), quality=np.array([[0.25, 0.75]])).tolist() == [[0.25, 0.75]]


def test_a_policy_summary():
    o = Outcomes.from_dataset(dataset(latency=[[1, 3]] * 3, energy=[[2, 6]] * 3, cost=[[0.5, 2]] * 3),
                              np.arange(3), refs=UtilityRefs(1.0, 1.0, "latency", "energy"))
    chosen, idx = np.array([0, 1, 1]), np.arange(3)
    # partial labels (q2's edge unknown), no propensity: SNIPS over the chosen, observed entries: all three
    got = o.summary(chosen, idx, np.array([0, 1.0, 0]), TIERS)
    assert got == pytest.approx({"edge_share": 1 / 3, "quality": 2 / 3, "utility": 2 / 3, "latency": 7 / 3,
                                 "energy": 14 / 3, "cost": 4.5 / 3})
    # the same choices for queries (q2, q0, q1): q2's edge is unknown, q0's and q1's cloud were right
    assert o.value(chosen, np.array([2, 0, 1]), np.array([0, 1.0, 0])) == 1.0


def test_weights_of_out_of_range_propensities_and_a_single_observed_row():
    o = Outcomes.from_dataset(dataset(propensity=[2.0, 1.0, 0.5]), np.arange(3))
    assert o.row_weights().tolist() == [1.0, 1.0, 2.0]  # a propensity above 1 is clipped to 1
    # only q0's edge counts (weight 1): its value is defined
    assert o.value(np.array([0]), np.array([0]), np.array([0, 1.0, 0])) == 1.0
