"""Image-less datasets with text stand-ins (MathVista's layout) on a tiny fixture built here, N-model routing,
and the eval script's table. The real data in ../shared/ is never read by the tests."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from vlrouter.eval.dataset import load_dataset, save_dataset
from vlrouter.eval.evaluate import lookup_rule
from vlrouter.eval.extras import ExtraFeatures
from vlrouter.features import FeaturePipeline, FeatureSpecMismatch
from vlrouter.features.spec import FeatureSpec
from vlrouter.router.utility import Outcomes

MODELS = [("llava-llama2-13b", "edge"), ("llavar-13b", "edge"), ("bard-multimodal", "cloud"),
          ("gpt4-2shot-ocr", "cloud"), ("chatgpt-2shot-ocr", "cloud")]
TASKS = ["figure question answering", "math word problem", "geometry problem solving"]
PRICE = {"bard-multimodal": 2e-4, "gpt4-2shot-ocr": 1.3e-2, "chatgpt-2shot-ocr": 6e-4}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """60 image-less queries; which model is right depends on the task (a rule the lookup can learn)."""
    root = tmp_path_factory.mktemp("mini-mathvista")
    rng = np.random.default_rng(0)
    (root / "models.json").write_text(json.dumps([{"name": n, "tier": t} for n, t in MODELS]))
    with open(root / "queries.jsonl", "w") as qf, open(root / "outcomes.jsonl", "w") as of:
        for i in range(60):
            task = TASKS[i % 3]
            split = "train" if i < 36 else "dev" if i < 42 else "test"
            qf.write(json.dumps({
                "id": str(i), "text": f"Question {i}: {task}?", "image": None, "split": split,
                "question_type": "multi_choice" if i % 2 else "free_form",
                "meta": {"task": task, "grade": "high school", "skills": ["arithmetic", "algebra"][: 1 + i % 2],
                         "img_width": 640, "img_height": 480},
                "caption": f"A diagram for {task}" if i % 4 else "", "ocr": "x = 3" if i % 5 else ""}) + "\n")
            for name, _ in MODELS:
                good = {"figure question answering": "llavar-13b", "math word problem": "bard-multimodal",
                        "geometry problem solving": "gpt4-2shot-ocr"}[task] == name
                of.write(json.dumps({"id": str(i), "model": name, "quality": float(good or rng.random() < 0.1),
                                     "cost_usd": PRICE.get(name, 0.0)}) + "\n")
    return root


def test_loader_keeps_the_text_stand_ins_and_round_trips(mini, tmp_path):
    ds = load_dataset(mini)
    q = ds.queries[1]
    assert q.image is None and ds.image_paths(q) == []
    assert q.extra["caption"].startswith("A diagram") and q.extra["meta"]["task"] == TASKS[1]
    again = load_dataset(save_dataset(ds, tmp_path / "copy"))
    assert [x.extra for x in again.queries] == [x.extra for x in ds.queries]
    np.testing.assert_array_equal(again.quality, ds.quality)
    pair = ds.select_models(["llava-llama2-13b", "bard-multimodal"])
    assert pair.model_names == ["llava-llama2-13b", "bard-multimodal"] and pair.quality.shape == (60, 2)
    np.testing.assert_array_equal(pair.quality[:, 1], ds.quality[:, 2])


def test_extras_are_declared_in_the_feature_spec(mini, features_config):
    ds = load_dataset(mini)
    train = ds.split("train")
    pipeline = FeaturePipeline(features_config)
    extras = ExtraFeatures.fit(ds, train, min_count=3)
    assert "meta.task=math word problem" in extras.vocabulary and extras.context
    block = extras.transform(ds, pipeline, progress=False)
    spec = extras.spec(pipeline.spec, pipeline.spec.text_dim)
    assert block.shape == (60, spec.extras_dim) and spec.dim == pipeline.spec.dim + spec.extras_dim
    sl = spec.slices()
    assert sl["extras"].stop - sl["extras"].start == spec.extras_dim
    text_dim = pipeline.spec.text_dim
    meta = block[:, text_dim:text_dim + len(extras.vocabulary)]
    j = extras.vocabulary.index("meta.task=math word problem")
    assert meta[1, j] == 1.0 and meta[0, j] == 0.0  # query 1 is a word problem, query 0 is not
    assert np.all(block[0, :text_dim] == 0)  # query 0 has neither caption nor OCR text
    assert FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(FeatureSpecMismatch):
        pipeline.spec.require_same(spec)  # a router trained with extras does not load into the gateway


def _router_on(tiers, decision: str):
    from vlrouter.router.mlp import MLPRouter

    router = MLPRouter.__new__(MLPRouter)  # only the decision rule is exercised here
    router.tiers, router.decision = tiers, decision
    return router


def test_n_model_choice_and_lookup_rule(mini):
    from vlrouter.router.mlp import Prediction

    ds = load_dataset(mini)
    probs = np.array([[0.1, 0.5, 0.2, 0.15, 0.05],    # p_cloud 0.40
                      [0.05, 0.05, 0.1, 0.7, 0.1]])   # p_cloud 0.90
    zeros, w = np.zeros((2, 5)), np.tile([0.0, 1.0, 0.0], (2, 1))
    policy = _router_on(ds.tiers, "policy")
    pred = Prediction(probs, zeros, zeros, zeros, w)
    assert policy.choose(pred, 0.5).tolist() == [1, 3]  # best edge model, then the best cloud model
    assert policy.choose(pred, 0.3).tolist() == [2, 3]  # the most probable cloud model of each row
    # expected utility: quality-only weights, so U = predicted quality; margin = best cloud - best edge
    quality = np.array([[0.30, 0.35, 0.20, 0.34, 0.10],   # margin -0.01
                        [0.20, 0.10, 0.25, 0.40, 0.30]])  # margin +0.20
    utility = _router_on(ds.tiers, "utility")
    pred = Prediction(probs, quality, zeros, zeros, w)
    np.testing.assert_allclose(utility.margins(pred), [-0.01, 0.20])
    assert utility.choose(pred, 0.0).tolist() == [1, 3]  # tau 0: the model with the highest expected utility
    assert utility.choose(pred, -0.05).tolist() == [3, 3]  # a negative margin leans to the cloud
    assert utility.choose(pred, 0.25).tolist() == [1, 0]  # a large one keeps both on the edge
    cost = np.tile([0.0, 0.0, 0.0, 2.0, 0.3], (2, 1))  # normalised latency: GPT-4 is slow
    pred = Prediction(probs, quality, cost, zeros, np.tile([0.5, 0.5, 0.0], (2, 1)))
    assert utility.choose(pred, 0.0).tolist() == [1, 2]  # a "fast" mix: row 2 takes the fast cloud model
    train, test = ds.split("train"), ds.split("test")
    out = Outcomes.from_dataset(ds, train)
    chosen = lookup_rule(ds, out, train, test, np.array([0.0, 1.0, 0.0]), "meta.task", min_group=3)
    expected = {"figure question answering": 1, "math word problem": 2, "geometry problem solving": 3}
    assert chosen.tolist() == [expected[ds.queries[i].extra["meta"]["task"]] for i in test]


def test_eval_script_table_on_the_fixture(mini, features_config, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"features": json.loads(features_config.model_dump_json()),
                               "backends": {"edge": {"kind": "local", "tier": "edge", "model_path": "x"}}}))
    run = subprocess.run([sys.executable, "scripts/eval_mathvista.py", "--data", str(mini), "--config", str(cfg),
                          "--seeds", "2", "--max-epochs", "3", "--group-dropout", "0.3,0.8", "--learning-curve", "0.5",
                          "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "=== pair: 2 models" in run.stdout and "=== all: 5 models" in run.stdout
    for row in ("mlp@edge50", "oracle", "random", "knn", "linear", "lookup", "model:gpt4-2shot-ocr"):
        assert row in run.stdout
    assert "pair target" in run.stdout and "all-11 target" in run.stdout and "in-sample ceilings" in run.stdout
    summary = json.loads((tmp_path / "out" / "mathvista.json").read_text())
    mlp = summary["setups"]["all"]["scenarios"]["quality-only"]["mlp"]
    assert {"quality", "quality_std", "edge_share", "cost", "model_shares"} <= set(mlp)
    assert len(summary["setups"]["pair"]["dev_loss_curves"]) == 2
    curve = summary["setups"]["all"]["learning_curve"]
    assert [p["train_fraction"] for p in curve] == [0.5, 1.0] and curve[0]["n_train"] == 18
    assert summary["setups"]["all"]["in_sample_group_ceilings"]["meta.task"] == pytest.approx(1.0)  # task decides
    for chosen in summary["setups"]["pair"]["group_dropout"]:  # chosen on dev loss, per seed
        losses = chosen["dev_loss"]
        assert set(losses) == {"0.3", "0.8"} and losses[str(chosen["chosen"])] == min(losses.values())
    assert (tmp_path / "out" / "pareto-all.png").stat().st_size > 10_000
    oracle = summary["setups"]["all"]["scenarios"]["quality-only"]["oracle"]["quality"]
    assert oracle == pytest.approx(1.0)  # every fixture query has a right model
    # the paired gaps, averaged over the seeds, agree with the difference of the mean utilities
    fast = summary["setups"]["all"]["scenarios"]["fast"]
    gap = fast["paired"]["knn"]
    assert gap["diff"] == pytest.approx(fast["mlp"]["utility"] - fast["knn"]["utility"], abs=2e-4)
    assert gap["ci95"][0] <= gap["diff"] <= gap["ci95"][1]
    assert "mlp - baseline, U (95% CI, mean over seeds)" in run.stdout


def test_eval_script_skips_without_data(tmp_path):
    run = subprocess.run([sys.executable, "scripts/eval_mathvista.py", "--data", str(tmp_path / "absent")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0 and "no MathVista routing data" in run.stdout
