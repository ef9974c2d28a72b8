from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from vlrouter.config import ImageLimits
from vlrouter.features import FeaturePipeline, FeatureSpec, FeatureSpecMismatch
from vlrouter.features.signals import SIGNALS
from vlrouter.media import decode_image_bytes
from vlrouter.telemetry.metrics import Metrics


def decoded(seed: int):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return decode_image_bytes(buf.getvalue(), ImageLimits())


@pytest.fixture(scope="module")
def pipeline(features_config):
    metrics = Metrics()
    p = FeaturePipeline(features_config, metrics)
    p.metrics = metrics
    return p


def test_spec_and_fused_vector(pipeline):
    spec = pipeline.spec
    assert spec.image_dim == 32 and spec.text_dim == 32 and spec.signals == SIGNALS
    assert spec.dim == 64 + len(SIGNALS)
    f = asyncio.run(pipeline.extract("What is this?", [decoded(0)]))
    sl = spec.slices()
    assert f.vector.shape == (spec.dim,)
    assert np.linalg.norm(f.vector[sl["image"]]) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(f.vector[sl["text"]]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(f.vector[sl["signals"]], f.signals)
    assert set(f.timings_ms) == {"signals", "image_encoder", "text_encoder", "features_total"}
    no_image = asyncio.run(pipeline.extract("text only"))
    assert not no_image.vector[sl["image"]].any() and no_image.cache["image"] == "none"


def test_cache_hits_are_counted(pipeline):
    image = decoded(1)
    first = asyncio.run(pipeline.extract("cache me", [image]))
    second = asyncio.run(pipeline.extract("cache me", [image]))
    assert first.cache == {"image": "miss", "text": "miss"} and second.cache == {"image": "hit", "text": "hit"}
    np.testing.assert_array_equal(first.vector, second.vector)
    text = pipeline.metrics.render().decode()
    assert 'vlrouter_feature_cache_total{encoder="text",result="hit"}' in text


def test_micro_batched_equals_single(features_config):
    p = FeaturePipeline(features_config.model_copy(update={"cache_entries": 0}))
    items = [(f"question number {i} " + "word " * i, [decoded(10 + i)]) for i in range(8)]

    async def run():
        together = await asyncio.gather(*(p.extract(t, imgs) for t, imgs in items))
        alone = [await p.extract(t, imgs) for t, imgs in items]
        return together, alone

    together, alone = asyncio.run(run())
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)
    assert p.text.batcher.items == 16 and p.text.batcher.batches < 16  # concurrent calls were batched


def test_encode_many_matches_extract(pipeline):
    texts, imgs = ["a", "b question", "c?"], [[decoded(20)], [], [decoded(21), decoded(22)]]
    matrix = pipeline.encode_many(texts, imgs, batch_size=2, progress=False)
    for row, t, im in zip(matrix, texts, imgs, strict=True):
        np.testing.assert_allclose(row, asyncio.run(pipeline.extract(t, im)).vector, atol=1e-5)


def test_spec_mismatch_names_both():
    a = FeatureSpec("open_clip:x", 32, "hf_text:y", 32, SIGNALS)
    a.require_same(FeatureSpec.from_dict(json.loads(json.dumps(a.to_dict()))))
    b = FeatureSpec("open_clip:x", 768, "hf_text:y", 32, SIGNALS[:-1])
    with pytest.raises(FeatureSpecMismatch) as info:
        a.require_same(b)
    message = str(info.value)
    assert "image=open_clip:x(32)" in message and "image=open_clip:x(768)" in message and "n_choices" in message


def test_route_cli_json(tmp_path, open_clip_dir, tiny_bert_dir, photo_jpeg):
    (tmp_path / "p.jpg").write_bytes(photo_jpeg)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
features:
  enabled: true
  image_encoder: {{kind: open_clip, path: "{open_clip_dir}"}}
  text_encoder: {{kind: hf_text, path: "{tiny_bert_dir}"}}
backends: {{edge: {{kind: local, tier: edge, model_path: "{tmp_path}"}}}}
""")
    result = subprocess.run([sys.executable, "-m", "vlrouter", "route", "--config", str(cfg), "--json",
                             "--text", "Explain step by step how many people are here", "--image",
                             str(tmp_path / "p.jpg"), "--scenario", "quality"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decision"]["tier"] == "cloud"
    assert set(report["timing_ms"]) == {"decode", "signals", "image_encoder", "text_encoder", "router", "total"}
    assert report["features"]["dim"] == 64 + len(SIGNALS)
    assert report["query"]["images"][0]["width"] == 512
