"""The serving pipeline's routing paths end to end, fast: a small MLP router trained here on a synthetic
bench (real training code, tiny real-architecture encoders), an OpenAI-compatible upstream on loopback.

Covers what the gateway-level tests with the tiny VLM reach slowly (so that the mutation check of
``api/pipeline.py`` can run these for every mutant): the cascade's two stages, features off and on,
a text-only query, forced models, and a streamed answer's usage chunk against its log row.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.conftest import ThreadServer, fixed_answer_app
from vlrouter.api.app import build_app
from vlrouter.config import EnergyConfig, Settings
from vlrouter.eval.dataset import load_dataset
from vlrouter.eval.featurize import featurize
from vlrouter.eval.synthetic import make_synthetic_bench
from vlrouter.features import FeaturePipeline
from vlrouter.router.train import TrainConfig, train_router
from vlrouter.router.utility import Outcomes
from vlrouter.telemetry.decision_log import read_rows

SMALL = TrainConfig(hidden=(32, 16), max_epochs=25, patience=5, calibration_folds=0, group_dropout=0.5,
                    ensemble=False, seed=0)


@pytest.fixture(scope="module")
def small_router(features_config, tmp_path_factory):
    bench = make_synthetic_bench(tmp_path_factory.mktemp("syn") / "bench", 240, seed=3, progress=False)
    ds = load_dataset(bench)
    pipeline = FeaturePipeline(features_config)
    X = featurize(ds, pipeline, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    router, _ = train_router(X, Outcomes.from_dataset(ds, ds.split("train")), ds.split("train"), ds.split("dev"),
                             spec=pipeline.spec, models=ds.model_dicts, config=SMALL, progress=False)
    return router.save(tmp_path_factory.mktemp("ckpt") / "router")


@pytest.fixture(scope="module")
def upstream():
    with ThreadServer(fixed_answer_app()) as server:
        yield server


def gateway(upstream, tmp_path, *, features=None, **routing) -> ThreadServer:
    settings = Settings(
        features=features.model_dump() if features is not None else {"enabled": False},
        routing={"fallback": True, **routing},
        log={"enabled": True, "path": str(tmp_path / "decisions.db")},
        backends={"edge": {"kind": "openai", "tier": "edge", "base_url": upstream.url + "/v1", "model": "m-edge"},
                  "cloud": {"kind": "openai", "tier": "cloud", "base_url": upstream.url + "/v1",
                            "model": "m-cloud"}})
    return ThreadServer(build_app(settings))


def stages(metrics: str) -> dict[str, float]:
    """The cascade's decisions by stage, from ``/metrics`` (0 where a stage never decided)."""
    out = {"text": 0.0, "image": 0.0}
    for line in metrics.splitlines():
        if line.startswith("vlrouter_routing_cascade_total{"):
            out[line.split('stage="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def image_lookups(metrics: str) -> float:
    """Image-encoder cache lookups (each embedded image is one, hit or miss)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith('vlrouter_feature_cache_total{encoder="image"'))


def infer(gw, photo_jpeg, text="How many people are in the picture?"):
    image = "data:image/jpeg;base64," + base64.b64encode(photo_jpeg).decode()
    reply = httpx.post(gw.url + "/infer", json={"text": text, "image": image, "max_tokens": 1}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()


@pytest.mark.parametrize(("band", "stage", "encoded"), [(1e-9, "text", 0.0), (1e9, "image", 1.0)])
def test_the_cascade_decides_at_the_stage_its_band_allows(upstream, small_router, features_config, photo_jpeg,
                                                          tmp_path, band, stage, encoded):
    with gateway(upstream, tmp_path, features=features_config, policy="mlp", checkpoint=str(small_router),
                 cascade_band=band) as gw:
        body = infer(gw, photo_jpeg)
        text_only = httpx.post(gw.url + "/infer", json={"text": "What is 2+2?", "max_tokens": 1}, timeout=60).json()
        metrics = httpx.get(gw.url + "/metrics").text
    assert body["policy"] == "mlp" and body["scores"]["image_encoder"] == encoded
    assert stages(metrics) == {"text": float(stage == "text"), "image": float(stage == "image")}
    assert image_lookups(metrics) == float(stage == "image")  # the first stage never runs the image encoder
    assert "image_encoder" not in text_only["scores"] and text_only["policy"] == "mlp"  # no image: no cascade
    rows = read_rows(tmp_path / "decisions.db")
    assert [r["scores"].get("image_encoder") for r in rows] == [encoded, None]
    assert all(r["policy"] == "mlp" and r["route_ms"] > 0 for r in rows)


def test_without_a_cascade_the_image_is_embedded_and_the_router_reads_it(upstream, small_router, features_config,
                                                                         photo_jpeg, tmp_path):
    with gateway(upstream, tmp_path, features=features_config, policy="mlp", checkpoint=str(small_router),
                 cascade_band=0.0) as gw:
        with_image = infer(gw, photo_jpeg)
        metrics = httpx.get(gw.url + "/metrics").text
    assert "image_encoder" not in with_image["scores"] and stages(metrics) == {"text": 0.0, "image": 0.0}
    assert image_lookups(metrics) == 1.0
    assert set(with_image["scores"]) >= {"margin"} and with_image["policy"] == "mlp"


def test_features_off_routes_on_the_signals_rule_and_forced_models_skip_routing(upstream, tmp_path, photo_jpeg):
    with gateway(upstream, tmp_path, policy="complexity-rule") as gw:
        auto = httpx.post(gw.url + "/infer", json={"text": "hi", "max_tokens": 1}).json()
        pictured = infer(gw, photo_jpeg, text="hi")  # the rule counts the image: 0.10 + 0.25 of benefit
        forced = httpx.post(gw.url + "/v1/chat/completions", json={
            "model": "cloud", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
        metrics = httpx.get(gw.url + "/metrics").text
    # remote backends are metered by the per-token estimate of their tier (3 prompt + 1 completion tokens)
    e = EnergyConfig()
    assert auto["energy_j"] == pytest.approx(3 * e.edge_j_per_input_token + e.edge_j_per_output_token)
    usage = forced.json()["usage"]
    assert auto["energy_source"] == "estimate" and usage["energy_source"] == "estimate"
    assert usage["energy_j"] == pytest.approx(3 * e.cloud_j_per_input_token + e.cloud_j_per_output_token)
    assert 'vlrouter_requests_total{backend="cloud",status="200",tier="cloud"} 1.0' in metrics
    assert 'vlrouter_tokens_total{direction="input",tier="edge"} 6.0' in metrics  # two edge answers
    assert auto["policy"] == "complexity-rule" and auto["tier"] == "edge"
    assert pictured["scores"]["image"] == 1.0 and auto["scores"]["image"] == 0.0
    assert pictured["scores"]["cloud_benefit"] > auto["scores"]["cloud_benefit"]
    assert forced.headers["x-vlrouter-tier"] == "cloud" and forced.headers["x-vlrouter-policy"] == "forced"
    rows = {(r["endpoint"], r["request_id"] == pictured["request_id"]): r for r in read_rows(tmp_path / "decisions.db")}
    rows = {"chat": rows["chat", False], "infer": rows["infer", False]}
    assert rows["chat"]["model_requested"] == "cloud" and rows["chat"]["decided_tier"] == "cloud"
    assert rows["infer"]["model_requested"] == "vlrouter-auto" and rows["infer"]["policy"] == "complexity-rule"


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_answer_reports_the_usage_its_row_holds(upstream, tmp_path, include_usage):
    body = {"model": "edge", "max_tokens": 4, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    with gateway(upstream, tmp_path) as gw, httpx.stream("POST", gw.url + "/v1/chat/completions", json=body) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    usage = [e["usage"] for e in events if e.get("usage")]
    (row,) = read_rows(tmp_path / "decisions.db")
    assert row["stream"] == 1 and row["status"] == 200 and row["error_code"] is None
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "fine" and events[-1 if not include_usage else -2]["choices"][0]["finish_reason"] == "stop"
    assert row["prompt_tokens"] == 3 and row["completion_tokens"] == 2 and row["energy_source"] == "estimate"
    if not include_usage:
        assert usage == []
        return
    (u,) = usage
    assert (u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]) == (3, 2, 5)
    assert u["energy_j"] == pytest.approx(row["energy_j"]) and u["energy_j"] > 0
