"""The feedback loop end to end: serve with exploration, score answers, export, train from the log, serve it."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.router.test_mlp_router import run_cli
from vlrouter.eval.dataset import import_decision_log

SHORT = ["How many circles?", "What colour is it?", "Is there a cat?", "Name the shape.", "Count the dots."]
LONG = ["Explain step by step how the quantities in this chart relate, and derive the trend carefully.",
        "Compare the two regions of the figure in detail and justify which one has the larger area."]


def png_b64(colour) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def oracle(text: str, tier: str) -> float:
    """The synthetic judge behind the feedback: the edge model only gets the short questions right."""
    return 1.0 if tier == "cloud" or text in SHORT else 0.0


@pytest.fixture(scope="module")
def logged(tiny_vlm, model_server, features_config, tmp_path_factory):
    from tests.conftest import ThreadServer, gateway_settings
    from vlrouter.api.app import build_app

    db = tmp_path_factory.mktemp("log") / "decisions.db"
    settings = gateway_settings(tiny_vlm, model_server.base_url, features=features_config.model_dump(),
                                log={"enabled": True, "path": str(db), "log_content": True},
                                routing={"default_scenario": "quality", "explore": 0.5, "explore_seed": 3})
    rng = np.random.default_rng(0)
    sent = []
    with ThreadServer(build_app(settings)) as gw, httpx.Client(base_url=gw.url, timeout=60) as http:
        for i in range(60):
            text = SHORT[i % len(SHORT)] if i % 3 else LONG[i % len(LONG)]
            body = {"text": text, "max_tokens": 2}
            if i % 2:
                body["image"] = png_b64(tuple(int(c) for c in rng.integers(0, 255, 3)))
            answer = http.post("/infer", json=body).json()
            sent.append(answer)
            score = oracle(text, answer["tier"])
            assert http.post("/v1/feedback", json={"request_id": answer["request_id"], "score": score}).status_code \
                == 200
        http.post("/infer", json={"text": "no feedback for this one", "max_tokens": 1})
        http.post("/infer", json={"text": "bad image", "image": "@@"})
    return db, sent


def test_log_becomes_a_partial_label_dataset(logged):
    db, sent = logged
    ds = import_decision_log(db)
    assert len(ds.queries) == 60  # the unscored and the failed request are left out
    assert sorted(m.name for m in ds.models) == ["cloud", "edge"]
    observed = np.isfinite(ds.quality)
    assert (observed.sum(axis=1) == 1).all()  # only the served model's outcome is known
    explored = [a for a in sent if a["explore"]]
    assert 10 <= len(explored) <= 50  # explore 0.5 with a fixed seed
    props = {round(q.extra["propensity"], 3) for q in ds.queries}
    assert props <= {0.25, 0.75}  # 2 tiers, eps 0.5: 1 - eps + eps/2 for the router's tier, eps/2 otherwise
    with_images = [q for q in ds.queries if q.extra["images"]]
    assert len(with_images) == 30 and all(p.is_file() for q in with_images for p in ds.image_paths(q))
    by_id = {a["request_id"]: a for a in sent}
    for q, row in zip(ds.queries, ds.quality, strict=True):
        tier = by_id[q.id]["tier"]
        j = [m.name for m in ds.models].index(tier)
        assert row[j] == oracle(q.text, tier)


def test_log_stats_and_export(logged, tmp_path):
    db, _ = logged
    result = run_cli("log", "stats", "--db", str(db), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 62 and report["answered"] == 61 and report["errors"] == {"invalid_base64": 1}
    assert report["with_feedback"] == 60 and 0 < report["edge_share"] < 1
    assert set(report["by_tier"]) == {"edge", "cloud"}
    assert all(g["joules_per_request"] > 0 and g["e2e_ms_p99"] >= g["e2e_ms_p50"] for g in report["by_tier"].values())
    table = run_cli("log", "stats", "--db", str(db), "--since", "1h")
    assert table.returncode == 0 and "tier edge" in table.stdout and "J/req" in table.stdout
    future = run_cli("log", "stats", "--db", str(db), "--since", "2999-01-01", "--json")
    assert json.loads(future.stdout)["requests"] == 0

    out = tmp_path / "rows.jsonl"
    assert run_cli("log", "export", "--db", str(db), "--out", str(out)).returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 62 and sum(r["feedback_score"] is not None for r in rows) == 60
    pq = tmp_path / "rows.parquet"
    assert run_cli("log", "export", "--db", str(db), "--format", "parquet", "--out", str(pq)).returncode == 0
    import pyarrow.parquet as parquet

    table = parquet.read_table(pq)
    assert table.num_rows == 62 and "energy_j" in table.column_names
    bad = run_cli("log", "export", "--db", str(db), "--format", "parquet")
    assert bad.returncode == 2 and "--out" in bad.stderr
    missing = run_cli("log", "stats", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no decision log" in missing.stderr


def test_train_from_log_and_serve_the_checkpoint(logged, features_config, tmp_path, make_gateway):
    db, _ = logged
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"features": json.loads(features_config.model_dump_json()),
                               "backends": {"edge": {"kind": "local", "tier": "edge", "model_path": "x"}}}))
    out = tmp_path / "from-log"
    result = run_cli("train", "--from-log", str(db), "--config", str(cfg), "--out", str(out), "--max-epochs", "30",
                     "--no-progress", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert "partial labels" in result.stdout and "floor 98% uncertified" in result.stdout
    meta = json.loads((out / "router.json").read_text())
    assert [m["name"] for m in meta["models"]] == ["cloud", "edge"]
    assert meta["training"]["data"] == str(db)

    both = run_cli("train", "--from-log", str(db), "--data", str(tmp_path), "--out", str(out))
    assert both.returncode == 2 and "exactly one" in both.stderr

    with make_gateway(None, features=features_config.model_dump(),
                      routing={"policy": "mlp", "checkpoint": str(out)}) as gw:
        body = httpx.post(gw.url + "/infer", json={"text": "How many circles?", "max_tokens": 1}, timeout=60).json()
    assert body["policy"] == "mlp" and set(body["scores"]) >= {"p_cloud", "p:edge", "q:cloud"}
