"""`vlrouter train` then `vlrouter route` with `routing.policy: mlp` on the checkpoint it wrote.

Real code paths end to end: a small SYNTHETIC bench, the tiny local encoders of conftest, the CLI as a
subprocess and a real photograph as the image.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from vlrouter.eval.synthetic import make_synthetic_bench
from vlrouter.features import FeatureSpec


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlrouter", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def write_config(path, features_config, **routing):
    path.write_text(json.dumps({"features": json.loads(features_config.model_dump_json()), "routing": routing,
                                "backends": {"edge": {"kind": "local", "tier": "edge", "model_path": "x"}}}))
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_synthetic_bench(tmp_path_factory.mktemp("syn") / "bench", 150, seed=2, progress=False)


@pytest.fixture(scope="module")
def data_args(bench, features_config, tmp_path_factory) -> list[str]:
    """The dataset flags of train, calibrate and eval (one feature cache for all of them)."""
    work = tmp_path_factory.mktemp("data")
    cfg = write_config(work / "features.yaml", features_config)
    return ["--data", str(bench), "--config", str(cfg), "--no-progress", "--cache-dir", str(work / "cache")]


@pytest.fixture(scope="module")
def checkpoint(data_args, tmp_path_factory):
    """A router written by `vlrouter train` (few epochs, no cross-fitting: it only has to exist)."""
    out = tmp_path_factory.mktemp("train") / "ckpt"
    result = run_cli("train", *data_args, "--out", str(out), "--max-epochs", "5", "--folds", "0",
                     "--group-dropout", "0.3")
    assert result.returncode == 0, result.stderr
    assert "checkpoint: " + str(out) in result.stdout
    return out


def test_route_with_a_trained_mlp_router(checkpoint, features_config, photo_jpeg, tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_jpeg)
    cfg = write_config(tmp_path / "cfg.yaml", features_config, policy="mlp", checkpoint=str(checkpoint))
    query = ["--config", str(cfg), "--text", "How many people are in this picture?", "--image", str(image)]
    result = run_cli("route", *query, "--json", "--scenario", "quality")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    meta = json.loads((checkpoint / "router.json").read_text())
    decision = report["decision"]
    assert decision["policy"] == "mlp" and decision["tier"] in ("edge", "cloud")
    names = [m["name"] for m in meta["models"]]
    expected = {"p_cloud", "margin"} | {f"{k}:{n}" for n in names for k in ("q", "u", "p")}
    assert set(decision["scores"]) == expected
    assert (decision["tier"] == "cloud") == (decision["scores"]["margin"] >= decision["threshold"])
    assert decision["threshold"] == pytest.approx(meta["thresholds"]["quality"], abs=1e-4)
    assert report["features"]["dim"] == FeatureSpec.from_dict(meta["feature_spec"]).dim
    assert report["features"]["spec"] == meta["feature_spec"]
    assert report["query"]["images"][0]["width"] == 512 and "router" in report["timing_ms"]

    text = run_cli("route", *query)  # the text report says the same
    assert text.returncode == 0, text.stderr
    assert f"decision  {decision['tier'].upper()} by mlp: utility margin" in text.stdout
    assert "scores    p_cloud=" in text.stdout


def test_route_names_the_setting_when_the_checkpoint_is_not_a_router(features_config, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = write_config(tmp_path / "cfg.yaml", features_config, policy="mlp", checkpoint=str(tmp_path / "empty"))
    result = run_cli("route", "--config", str(cfg), "--text", "hi")
    assert result.returncode == 2
    assert result.stderr.startswith(f"vlrouter: routing.checkpoint {tmp_path / 'empty'}: ")
    assert "not a router checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_calibrate_and_eval_report_bad_routers_and_budgets(data_args, checkpoint, tmp_path):
    missing = tmp_path / "no-router"
    result = run_cli("eval", *data_args, "--router", str(missing))
    assert result.returncode == 2 and result.stderr.startswith(f"vlrouter: --router {missing}: ")
    before = (checkpoint / "router.json").read_text()
    result = run_cli("calibrate", *data_args, "--router", str(checkpoint), "--energy-budget", "-1")
    assert result.returncode == 2, result.stderr
    assert "vlrouter: --energy-budget -1.0: no threshold meets it on dev (lowest mean is " in result.stderr
    assert (checkpoint / "router.json").read_text() == before  # nothing was written
