"""Train the MLP router on the SYNTHETIC bench with tiny local encoders, and check what it learned."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from vlrouter.eval.dataset import load_dataset
from vlrouter.eval.evaluate import evaluate, rank_score
from vlrouter.eval.featurize import featurize
from vlrouter.eval.synthetic import make_synthetic_bench
from vlrouter.features import FeaturePipeline, FeatureSpecMismatch
from vlrouter.router import RoutingInput, parse_scenario
from vlrouter.router.mlp import MLPRouter
from vlrouter.router.train import TrainConfig, train_router
from vlrouter.router.utility import Outcomes


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_synthetic_bench(tmp_path_factory.mktemp("syn") / "bench", 1200, seed=1, progress=False)


@pytest.fixture(scope="module")
def trained(bench, features_config, tmp_path_factory):
    ds = load_dataset(bench)
    pipeline = FeaturePipeline(features_config)
    X = featurize(ds, pipeline, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    train, dev = ds.split("train"), ds.split("dev")
    router, info = train_router(X, Outcomes.from_dataset(ds, train), train, dev, spec=pipeline.spec,
                                models=ds.model_dicts,
                                config=TrainConfig(seed=0), progress=False)
    path = router.save(tmp_path_factory.mktemp("ckpt") / "router")
    return ds, X, pipeline, router, path, info


def test_beats_random_at_matched_share_in_every_scenario(trained):
    ds, X, _, router, _, _ = trained
    report = evaluate(ds, X, router)
    for name, rows in report["scenarios"].items():
        assert rows["mlp"]["quality"] > rows["random"]["quality"], (name, rows["mlp"], rows["random"])
        assert rows["mlp"]["edge_share"] == pytest.approx(rows["random"]["edge_share"], abs=0.05)
        assert rows["oracle"]["utility"] >= rows["mlp"]["utility"]
        # noise-free: with the simulator's P(correct), the router also beats random at its shares
        assert rows["mlp"]["expected_utility"] > rows["random"]["expected_utility"], name
    s = report["scenarios"]
    assert s["energy"]["mlp"]["edge_share"] > s["quality"]["mlp"]["edge_share"]
    assert set(s["quality"]) >= {"mlp", "random", "oracle", "knn", "linear", "signals", "always_edge", "always_cloud"}
    keys = {"edge_share", "quality", "quality_retention", "latency_reduction", "energy_reduction", "cost", "rank_score"}
    assert keys <= set(s["fast"]["mlp"])


def test_paired_gaps_match_the_table_and_random_is_its_expectation(trained):
    ds, X, _, router, _, _ = trained
    report = evaluate(ds, X, router)
    for name, rows in report["scenarios"].items():
        paired = report["paired"][name]
        assert set(paired) >= {"knn", "linear", "signals", "always_edge", "always_cloud", "random"}
        assert "oracle" not in paired and "mlp" not in paired
        for base in ("knn", "linear", "signals", "always_edge", "always_cloud"):
            gap = paired[base]["realised"]
            assert gap["diff"] == pytest.approx(rows["mlp"]["utility"] - rows[base]["utility"], abs=2e-5)
            assert gap["ci95"][0] <= gap["diff"] <= gap["ci95"][1] and gap["se"] > 0
            expected = paired[base]["expected"]["diff"]
            assert expected == pytest.approx(rows["mlp"]["expected_utility"] - rows[base]["expected_utility"], abs=2e-5)
        # random is compared with its exact expectation at the router's shares, not with noisy draws
        assert paired["random"]["realised"]["diff"] == pytest.approx(
            rows["mlp"]["utility"] - rows["random"]["utility"], abs=0.02)


def test_blind_scale_only_moves_the_edge_models_on_their_blind_spots(tmp_path):
    plain = make_synthetic_bench(tmp_path / "plain", 60, seed=3, progress=False)
    strong = make_synthetic_bench(tmp_path / "strong", 60, seed=3, blind_scale=2.5, progress=False)
    none = make_synthetic_bench(tmp_path / "none", 60, seed=3, blind_scale=0.0, progress=False)
    read = [[json.loads(line) for line in (p / "outcomes.jsonl").read_text().splitlines()]
            for p in (plain, strong, none)]
    meta = {q["id"]: q["meta"] for q in map(json.loads, (plain / "queries.jsonl").read_text().splitlines())}
    moved = 0
    for a, b, c in zip(*read, strict=True):
        m = meta[a["id"]]
        blind = m["colour"] in ("purple", "orange") or m["shape"] == "triangle"
        if a["model"] == "cloud-large" or not blind:
            assert a["p_correct"] == b["p_correct"] == c["p_correct"]
        else:
            assert b["p_correct"] <= a["p_correct"] <= c["p_correct"]
            moved += b["p_correct"] < a["p_correct"]
    assert moved > 0


def test_multi_bench_script_pools_paired_gaps(features_config, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"features": json.loads(features_config.model_dump_json()),
                               "backends": {"edge": {"kind": "local", "tier": "edge", "model_path": "x"}}}))
    out = tmp_path / "multi.json"
    run = subprocess.run([sys.executable, "scripts/eval_synthetic.py", "--n", "150", "--seeds", "0,1",
                          "--blind-scales", "1,2.5", "--max-epochs", "3", "--config", str(cfg), "--work",
                          str(tmp_path / "benches"), "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
                          "--no-progress"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "blind scale 2.5: 2 benches, 60 test queries in all" in run.stdout
    result = json.loads(out.read_text())
    assert result["synthetic"] is True and set(result["blind_scales"]) == {"1", "2.5"}
    assert (tmp_path / "benches" / "syn-n150-seed1-blind2.5" / "outcomes.jsonl").is_file()
    for scale in result["blind_scales"].values():
        runs, pooled = scale["runs"], scale["pooled"]
        for scenario in ("fast", "quality", "energy"):
            for base in ("signals", "linear", "knn", "random", "always_edge", "always_cloud"):
                got = pooled[scenario][base]["realised"]
                per = [r["paired"][scenario][base]["realised"] for r in runs]
                assert got["per_bench"] == [p["diff"] for p in per]
                assert got["diff"] == pytest.approx(np.mean(got["per_bench"]), abs=1e-5)
                assert got["se"] == pytest.approx(np.sqrt(sum(p["se"] ** 2 for p in per)) / 2, abs=1e-5)
                assert "expected" in pooled[scenario][base]  # synthetic data carries P(correct)
    bad = subprocess.run([sys.executable, "scripts/eval_synthetic.py", "--seeds", "a"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--seeds takes integers" in bad.stderr


def test_training_is_reproducible(trained, features_config):
    ds, X, pipeline, router, _, info = trained
    again, info2 = train_router(X, Outcomes.from_dataset(ds, ds.split("train")), ds.split("train"),
                                ds.split("dev"), spec=pipeline.spec,
                                models=ds.model_dicts,
                                config=TrainConfig(seed=0), progress=False)
    assert info2["best_epoch"] == info["best_epoch"]
    np.testing.assert_allclose(again.predict(X[:16], np.array([0.2, 0.5, 0.3])).utility,
                               router.predict(X[:16], np.array([0.2, 0.5, 0.3])).utility, atol=1e-6)


def test_checkpoint_round_trip_and_spec_check(trained):
    ds, X, pipeline, router, path, _ = trained
    meta = json.loads((path / "router.json").read_text())
    assert {"feature_spec", "models", "thresholds", "dev_metrics", "utility_refs", "scaler"} <= set(meta)
    loaded = MLPRouter.load(path, expected_spec=pipeline.spec)
    assert len(loaded.nets) == len(router.nets) == 6 and meta["decision"] == "utility"  # main net + 5 cross-fits
    for field in ("probs", "quality", "latency", "energy"):
        np.testing.assert_allclose(getattr(loaded.predict(X[:8], np.array([0.1, 0.8, 0.1])), field),
                                   getattr(router.predict(X[:8], np.array([0.1, 0.8, 0.1])), field), atol=1e-6)
    decision = loaded.route(RoutingInput("q", 1, 1, parse_scenario("quality"), features=X[0]))
    assert decision.policy == "mlp" and decision.model in ds.model_names and "margin" in decision.scores
    w_op, tau = loaded.operating_point(parse_scenario("quality"))  # the floor's weights, threshold 0
    assert tau == 0.0 and w_op[1] >= 0.8 and w_op.sum() == pytest.approx(1.0)
    pred = loaded.predict(X[:1], w_op)
    assert decision.scores["margin"] == pytest.approx(float(loaded.margins(pred)[0]), abs=1e-4)
    assert (decision.tier == "cloud") == (decision.scores["margin"] >= decision.threshold)
    assert decision.threshold == pytest.approx(loaded.thresholds["quality"], abs=1e-6)  # presets reproduce tau
    assert decision.floor == 0.98 and decision.explanation["min_quality"] == 0.98
    assert loaded.calibration is not None and loaded.calibration.fit(w_op, 0.98).n == len(router.calibration.quality)
    other = type(pipeline.spec)(pipeline.spec.image_encoder, 999, pipeline.spec.text_encoder,
                                pipeline.spec.text_dim, pipeline.spec.signals)
    with pytest.raises(FeatureSpecMismatch, match="999"):
        MLPRouter.load(path, expected_spec=other)


def test_rank_score_formula():
    assert rank_score(0.8, 0.001, 0.001, 0.1) == pytest.approx(1.1 * 0.8 * 1 / (0.08 + 1))
    assert rank_score(0.8, 0.1, 0.001, 0.1) == 0.0
    assert rank_score(0.5, 0.01, 0.0, 0.1) is None  # a free model makes log2 undefined


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vlrouter", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_cli_train_calibrate_eval_and_gateway(trained, bench, features_config, tmp_path, make_gateway):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"features": json.loads(features_config.model_dump_json()),
                               "backends": {"edge": {"kind": "local", "tier": "edge", "model_path": "x"}}}))
    common = ["--data", str(bench), "--config", str(cfg), "--no-progress", "--cache-dir", str(tmp_path / "c")]
    out = tmp_path / "ckpt"
    bad = run_cli("train", *common, "--out", str(out), "--group-dropout", "0.3,1.5")
    assert bad.returncode == 2 and "--group-dropout" in bad.stderr and not out.exists()
    result = run_cli("train", *common, "--out", str(out), "--max-epochs", "40")
    assert result.returncode == 0, result.stderr
    assert "quality  floor 98% certified" in result.stdout
    # unset options keep TrainConfig's defaults: every group-dropout candidate is tried
    trained_with = json.loads((out / "router.json").read_text())["training"]["group_dropout"]
    assert set(trained_with["dev_loss"]) == {str(v) for v in TrainConfig().group_dropout}
    result = run_cli("calibrate", *common, "--router", str(out), "--scenario", "quality", "--target-edge-share", "0.8")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "router.json").read_text())
    assert meta["calibration"]["quality"]["edge_share"] == pytest.approx(0.8, abs=0.1)
    assert meta["floors"]["pinned"] == {"quality": meta["thresholds"]["quality"]}  # pinned: the floor is set aside
    result = run_cli("calibrate", *common, "--router", str(out), "--scenario", "fast", "--min-quality", "0.8")
    assert result.returncode == 0, result.stderr
    assert "fast: floor 80% fitted on the checkpoint's held-out predictions" in result.stdout
    meta = json.loads((out / "router.json").read_text())
    assert meta["floors"]["presets"] == {"fast": 0.8, "quality": 0.98, "energy": 0.9}
    assert meta["calibration"]["fast"]["fit"]["retention_low"] >= 0.8
    assert meta["calibration"]["fast"]["check"]["split"] == "dev"
    bad = run_cli("calibrate", *common, "--router", str(out), "--scenario", "fast", "--min-quality", "1.2")
    assert bad.returncode == 2 and "--min-quality" in bad.stderr
    report, plot, curve = tmp_path / "eval.json", tmp_path / "pareto.png", tmp_path / "curve.png"
    result = run_cli("eval", *common, "--router", str(out), "--json", str(report), "--plot", str(plot),
                     "--curve-plot", str(curve))
    assert result.returncode == 0, result.stderr
    assert "[quality]" in result.stdout and plot.stat().st_size > 10_000 and curve.stat().st_size > 10_000
    assert "floors (retention" in result.stdout
    evaluated = json.loads(report.read_text())
    assert set(evaluated["scenarios"]) == {"fast", "quality", "energy"}
    assert evaluated["floors"]["fast"]["floor"] == 0.8 and evaluated["floors"]["quality"]["status"] is None  # pinned
    stored = json.loads((out / "router.json").read_text())["curve"]
    assert stored["split"] == "test" and stored["curves"]["fast"]["mlp"] == evaluated["curves"]["fast"]["mlp"]

    import httpx

    with make_gateway(None, features=features_config.model_dump(),
                      routing={"policy": "mlp", "checkpoint": str(out)}) as gw:
        body = httpx.post(gw.url + "/infer", json={"text": "How many red circles are there?", "max_tokens": 1},
                          timeout=60).json()
        assert body["policy"] == "mlp" and "margin" in body["scores"]
        tau = json.loads((out / "router.json").read_text())["thresholds"]["quality"]
        assert body["threshold"] == pytest.approx(tau, abs=1e-4)


def test_cost_heads_and_ensemble_mean(trained):
    ds, X, _, router, _, _ = trained
    test = ds.split("test")
    out = Outcomes.from_dataset(ds, ds.split("train"))
    pred = router.predict(X[test], np.array([0.6, 0.3, 0.1]))
    lat = out.latency[test] / out.refs.lat_ref
    assert list(np.argsort(pred.latency.mean(0))) == list(np.argsort(lat.mean(0)))  # model order by latency
    # per query, the cloud latency head tracks the realised latency (image upload and answer length vary)
    assert np.corrcoef(pred.latency[:, 2], lat[:, 2])[0, 1] > 0.3
    members = [MLPRouter(net, spec=router.spec, models=router.models, mean=router.mean, std=router.std,
                         refs=router.refs) for net in router.nets]
    parts = [m.predict(X[test[:20]], np.array([0.6, 0.3, 0.1])) for m in members]
    whole = router.predict(X[test[:20]], np.array([0.6, 0.3, 0.1]))
    np.testing.assert_allclose(whole.quality, np.mean([p.quality for p in parts], axis=0), atol=1e-6)
    np.testing.assert_allclose(whole.probs, np.mean([p.probs for p in parts], axis=0), atol=1e-6)


def test_a_free_model_is_predicted_to_cost_exactly_nothing(trained):
    # an additive cost head gave free local models small positive costs that outweighed real quality
    # differences between edge models (MathVista); the multiplicative head keeps a zero-cost model at zero
    ds, X, pipeline, _, _, _ = trained
    train, dev, test = ds.split("train"), ds.split("dev"), ds.split("test")
    out = Outcomes.from_dataset(ds, train)
    out.latency, out.energy = out.latency.copy(), out.energy.copy()
    out.latency[:, 0] = 0.0
    out.energy[:, 0] = 0.0
    router, _ = train_router(X, out, train, dev, spec=pipeline.spec, models=ds.model_dicts, progress=False,
                             config=TrainConfig(seed=0, max_epochs=5, calibration_folds=0, group_dropout=0.3))
    pred = router.predict(X[test], np.array([0.6, 0.3, 0.1]))
    assert np.all(pred.latency[:, 0] == 0.0) and np.all(pred.energy[:, 0] == 0.0)
    assert np.all(pred.latency[:, 1:] > 0.0)
    np.testing.assert_allclose(pred.latency[:, 1:].mean(0), out.latency[train, 1:].mean(0) / out.refs.lat_ref, rtol=0.5)


def test_tau_calibration_keeps_the_default_unless_the_data_says_otherwise(trained):
    from vlrouter.router.mlp import Prediction
    from vlrouter.router.train import calibrate_taus
    from vlrouter.router.utility import UtilityRefs

    router = trained[3]
    router = MLPRouter(router.nets, spec=router.spec, models=router.models, mean=router.mean, std=router.std,
                       refs=router.refs)
    rng = np.random.default_rng(0)
    n = 400
    refs = UtilityRefs(1.0, 1.0, "latency", "energy")
    zeros = np.zeros((n, 3))
    margin = rng.uniform(-0.3, 0.3, n)  # predicted cloud - edge quality
    quality = np.stack([0.5 + 0 * margin, 0.5 + 0 * margin, 0.5 + margin], 1)
    pred = Prediction(zeros + 1 / 3, quality, zeros, zeros, np.tile([0.0, 1.0, 0.0], (n, 1)))
    # realised outcomes: pure noise, no threshold is really better than another -> tau stays at 0
    noise = Outcomes((rng.random((n, 3)) < 0.5).astype(float), zeros, zeros, zeros, refs)
    taus, report = calibrate_taus(router, {"quality-only": pred}, noise, np.arange(n),
                                  scenarios={"quality-only": (0, 1, 0)})
    assert taus["quality-only"] == 0.0 and "best_tau" in report["quality-only"]
    # realised outcomes: the cloud model is only right where the predicted margin exceeds 0.15 -> tau moves up
    truth = np.stack([np.full(n, 0.5), np.full(n, 0.5), (margin > 0.15).astype(float)], 1)
    clear = Outcomes(truth, zeros, zeros, zeros, refs)
    taus, _ = calibrate_taus(router, {"quality-only": pred}, clear, np.arange(n), scenarios={"quality-only": (0, 1, 0)})
    assert 0.1 <= taus["quality-only"] <= 0.2


def _area(points) -> float:
    xs, ys = zip(*sorted(points), strict=True)
    return float(np.trapezoid(ys, xs))


def test_every_preset_keeps_its_floor_and_beats_random_along_the_curve(trained):
    ds, X, _, router, _, _ = trained
    report = evaluate(ds, X, router)
    for name, floor in report["floors"].items():
        assert floor["floor"] == {"fast": 0.9, "quality": 0.98, "energy": 0.9}[name]
        assert floor["status"] in ("certified", "all-edge") and floor["verdict"] in ("held", "within noise"), floor
        low, high = floor["retention_ci95"]
        assert low <= floor["retention"] <= high and high >= floor["floor"]
        assert floor["edge_share"] == pytest.approx(report["scenarios"][name]["mlp"]["edge_share"], abs=1e-4)
        curves = report["curves"][name]
        assert _area(curves["mlp"]) > _area(curves["random"]), name  # better than random at every share, on average
        assert _area(curves["oracle"]) >= _area(curves["mlp"])
    assert report["floors"]["energy"]["edge_share"] > report["floors"]["quality"]["edge_share"]
    assert 0 < report["floors"]["fast"]["edge_share"] < 1  # a floor turns "fast" into a routing decision again


def test_a_request_floor_moves_decisions_monotonically_and_is_explained(trained):
    ds, X, _, router, _, _ = trained
    idx = ds.split("test")[:60]
    floors = (0.6, 0.8, 0.9, 0.95, 0.99)
    chosen_q = np.zeros((len(idx), len(floors)))
    cloud = np.zeros(len(floors))
    for j, floor in enumerate(floors):
        scenario = parse_scenario(f"fast;min_quality={floor}")
        for i, row in enumerate(idx):
            d = router.route(RoutingInput("q", 1, 1, scenario, features=X[row]))
            assert d.floor == floor and d.explanation["min_quality"] == floor
            chosen_q[i, j] = d.scores[f"q:{d.model}"]
            cloud[j] += d.tier == "cloud"
    assert (np.diff(chosen_q, axis=1) >= -1e-9).all()  # each query's predicted quality only rises with the floor
    assert (np.diff(cloud) >= 0).all() and cloud[-1] > cloud[0]
    why = d.explanation
    assert set(why["quality"]) == {"edge", "cloud"} and why["floor_status"] in ("certified", "all-edge", "reference")
    assert len(why["top_features"]) == 3 and set(why["blocks"]) <= {"image", "text", "signals", "extras"}
    effects = [abs(f["effect"]) for f in why["top_features"]]
    assert effects == sorted(effects, reverse=True) and effects[0] > 0
    # the named features are the largest gradient x input terms of the last query's quality gain
    from vlrouter.router.explain import attribution, feature_names

    x_std = (X[idx[-1]].astype(np.float32) - router.mean) / router.std
    model = {m["name"]: j for j, m in enumerate(router.models)}
    effect = attribution(router.nets, x_std, model[why["models"]["cloud"]], model[why["models"]["edge"]])
    assert effect.shape == x_std.shape and np.isfinite(effect).all()
    closed_form = router.attributor(x_std, model[why["models"]["cloud"]], model[why["models"]["edge"]])
    np.testing.assert_allclose(closed_form, effect, atol=1e-6)  # the request path's formula = autograd
    top = [feature_names(router.spec)[i] for i in np.argsort(-np.abs(effect))[:3]]
    assert top == [f["name"] for f in why["top_features"]]


def test_gateway_serves_floors_and_says_why(trained, features_config, make_gateway, model_server, photo_data_url,
                                            tmp_path):
    import httpx
    from openai import OpenAI

    from vlrouter.telemetry.decision_log import read_rows

    ds, _, _, _, path, _ = trained
    db = tmp_path / "decisions.db"
    with make_gateway(model_server.base_url, features=features_config.model_dump(),
                      routing={"policy": "mlp", "checkpoint": str(path), "min_quality": {"energy": 0.85}},
                      log={"enabled": True, "path": str(db)}) as gw, httpx.Client(base_url=gw.url, timeout=60) as http:
        body = http.post("/infer", json={"text": "How many red circles are there?", "image": photo_data_url,
                                         "scenario": "fast", "min_quality": 0.95, "max_tokens": 1}).json()
        assert body["policy"] == "mlp" and body["min_quality"] == 0.95 and body["scenario"]["min_quality"] == 0.95
        assert body["why"]["min_quality"] == 0.95 and len(body["why"]["top_features"]) == 3
        assert body["why"]["models"]["cloud"] == "cloud-large" and body["why"]["models"]["edge"] in ds.model_names
        client = OpenAI(base_url=gw.url + "/v1", api_key="unused")
        raw = client.chat.completions.with_raw_response.create(
            model="vlrouter-auto", max_tokens=1, messages=[{"role": "user", "content": "Describe the scene."}],
            extra_headers={"X-VLRouter-Scenario": "energy"})
        h = raw.headers
        assert h["x-vlrouter-policy"] == "mlp" and h["x-vlrouter-min-quality"] == "0.85"  # routing.min_quality
        assert h["x-vlrouter-scenario"] == "energy;min_quality=0.85"
        assert len(h["x-vlrouter-top-features"].split(",")) == 3 and "edge=" in h["x-vlrouter-quality"]
        assert h["x-vlrouter-floor-status"] in ("certified", "all-edge", "reference")
        bad = http.post("/infer", json={"text": "q", "min_quality": 2})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_scenario"
        assert bad.json()["error"]["param"] == "min_quality"
        card = http.get("/v1/models").json()["data"][0]
        assert card["id"] == "vlrouter-auto" and card["router"]["checkpoint"] == str(path)
        assert card["router"]["floors"] == {"fast": 0.9, "quality": 0.98, "energy": 0.9}
    rows = {r["scenario_name"]: r for r in read_rows(db)}
    assert rows["fast"]["min_quality"] == 0.95 and rows["fast"]["explanation"]["min_quality"] == 0.95
    assert rows["energy"]["min_quality"] == 0.85
