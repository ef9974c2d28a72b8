"""The planner alone: chains, forced models, unknown models and exploration propensities (no HTTP)."""

from __future__ import annotations

import math
import random

import pytest

from vlrouter.router import Decision
from vlrouter.router.planner import AUTO_MODEL, BackendRef, Planner, UnknownModel

BOTH = [BackendRef("edge", "edge", "edge-demo-vlm"), BackendRef("cloud", "cloud", "big-vlm")]


def decision(tier: str) -> Decision:
    return Decision(tier=tier, policy="test", threshold=0.5, scores={"cloud_benefit": 0.7})


@pytest.mark.parametrize(("tier", "chain"), [("edge", ("edge", "cloud")), ("cloud", ("cloud", "edge"))])
def test_routed_chain_falls_back_to_the_other_tier(tier, chain):
    plan = Planner(BOTH).routed(decision(tier))
    assert plan.chain == chain
    assert (plan.explore, plan.propensity) == (False, 1.0)


def test_no_fallback_keeps_one_backend():
    assert Planner(BOTH, fallback=False).routed(decision("cloud")).chain == ("cloud",)


def test_missing_tier_serves_the_other_and_says_so_without_mutating_the_decision():
    d = decision("cloud")
    plan = Planner([BOTH[0]]).routed(d)
    assert plan.chain == ("edge",)
    assert plan.decision.scores["tier_unavailable"] == 1.0
    assert "tier_unavailable" not in d.scores


@pytest.mark.parametrize(("model", "backend"), [("edge", "edge"), ("cloud", "cloud"), ("big-vlm", "cloud"),
                                                ("edge-demo-vlm", "edge")])
def test_forced_models_get_exactly_one_backend(model, backend):
    plan = Planner(BOTH).forced(model)
    assert plan.chain == (backend,)
    assert plan.decision.policy == "forced" and math.isnan(plan.decision.threshold)


def test_unknown_model_and_unserved_tier_are_404():
    with pytest.raises(UnknownModel) as info:
        Planner(BOTH).forced("gpt-9")
    assert (info.value.status, info.value.code, info.value.param) == (404, "model_not_found", "model")
    assert AUTO_MODEL in info.value.message
    with pytest.raises(UnknownModel, match="no backend serves tier 'cloud'"):
        Planner([BOTH[0]]).forced("cloud")


def test_exploration_draws_tiers_with_the_logged_propensity():
    eps = 0.4
    planner = Planner(BOTH, explore=eps, rng=random.Random(7))
    plans = [planner.routed(decision("edge")) for _ in range(4000)]
    served_cloud = [p for p in plans if p.chain[0] == "cloud"]
    assert all(p.explore for p in served_cloud)  # only exploration serves the other tier
    assert {round(p.propensity, 6) for p in served_cloud} == {eps / 2}
    assert {round(p.propensity, 6) for p in plans if p.chain[0] == "edge"} == {round(1 - eps + eps / 2, 6)}
    assert abs(len(served_cloud) / len(plans) - eps / 2) < 0.03


def test_no_exploration_with_a_single_tier():
    plan = Planner([BOTH[0]], explore=0.5, rng=random.Random(0)).routed(decision("edge"))
    assert (plan.explore, plan.propensity) == (False, 1.0)
