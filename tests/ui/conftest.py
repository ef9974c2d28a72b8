"""The console's browser tests: a keyed gateway with a trained MLP router and a decision log, real
traffic through the OpenAI SDK, and Debian's headless Chromium driven by Playwright.

Chromium comes from the system (``scripts/_setup.sh`` installs Debian's package); Playwright never
downloads a browser here. Without one the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

KEY = "sk-console"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def eval_curves(ds, X, router) -> dict:
    """Quality retention vs edge share of the router on dev per preset (``eval.evaluate.sweep``, retention
    of the all-cloud quality) and random routing between the same end points, in the shape ``vlrouter
    eval`` stores with a checkpoint (``curve``: data, split, n, reference, floors, curves)."""
    from vlrouter.eval.evaluate import sweep

    curves = {}
    for name in ("fast", "quality", "energy"):
        points = sorted(sweep(ds, X, router, name, "dev", points=41), key=lambda p: p["edge_share"])
        cloud, edge = points[0]["quality"], points[-1]["quality"]
        ref = cloud if cloud > 0 else 1.0
        shares = np.linspace(0, 1, 11).round(2).tolist()
        curves[name] = {"mlp": [[round(p["edge_share"], 4), round(p["quality"] / ref, 4)] for p in points],
                        "random": [[s, round(((1 - s) * cloud + s * edge) / ref, 4)] for s in shares]}
    return {"data": "synthetic bench (400 queries, seed 2)", "split": "dev", "n": len(ds.split("dev")),
            "at": time.time(), "reference": "cloud-large", "floors": {}, "curves": curves}


@pytest.fixture(scope="session")
def console_checkpoint(features_config, tmp_path_factory):
    """A small MLP router trained on the synthetic bench with the test encoders, its eval curve stored."""
    from vlrouter.eval.dataset import load_dataset
    from vlrouter.eval.featurize import featurize
    from vlrouter.eval.synthetic import make_synthetic_bench
    from vlrouter.features import FeaturePipeline
    from vlrouter.router.train import TrainConfig, train_router
    from vlrouter.router.utility import Outcomes

    bench = make_synthetic_bench(tmp_path_factory.mktemp("syn") / "bench", 400, seed=2, progress=False)
    ds = load_dataset(bench)
    pipeline = FeaturePipeline(features_config)
    X = featurize(ds, pipeline, cache_dir=None, progress=False)
    train, dev = ds.split("train"), ds.split("dev")
    config = TrainConfig(hidden=(64, 32), max_epochs=40, group_dropout=(0.5,), calibration_folds=0, ensemble=False)
    router, _ = train_router(X, Outcomes.from_dataset(ds, train), train, dev, spec=pipeline.spec,
                             models=ds.model_dicts, config=config, progress=False)
    router.meta["training"]["data"] = "synthetic bench (400 queries, seed 2)"
    path = router.save(tmp_path_factory.mktemp("ckpt") / "router")
    meta = json.loads((path / "router.json").read_text())
    meta["curve"] = eval_curves(ds, X, router)
    (path / "router.json").write_text(json.dumps(meta, indent=2))
    return path


@pytest.fixture(scope="module")
def console(tiny_vlm, model_server, features_config, console_checkpoint, tmp_path_factory):
    """A keyed gateway (edge in-process, cloud the serve-model process) with the MLP router and a log."""
    from tests.conftest import ThreadServer, gateway_settings
    from vlrouter.api.app import build_app

    db = tmp_path_factory.mktemp("console") / "decisions.db"
    settings = gateway_settings(
        tiny_vlm, model_server.base_url, features=features_config.model_dump(), server={"api_keys": [KEY]},
        log={"enabled": True, "path": str(db)}, console={"refresh_s": 1},
        routing={"policy": "mlp", "checkpoint": str(console_checkpoint), "explore": 0.3, "explore_seed": 5})
    with ThreadServer(build_app(settings)) as server:
        server.db = db
        yield server


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no system chromium (Debian's `chromium` package; scripts/_setup.sh installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (.[test])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()
