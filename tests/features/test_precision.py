"""Encoder precision (fp32 / bf16 / int8 / auto): unit float32 rows, agreement with fp32, the auto
rule, config errors, and FeatureSpec's precision tags. No timing asserts (see scripts/bench_features.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from vlrouter._torch_compat import import_torch
from vlrouter.config import ConfigError, EncoderConfig, FeaturesConfig, load_settings
from vlrouter.features import FeaturePipeline
from vlrouter.features.encoders import (
    EncoderLoadError,
    build_encoder,
    fast_int8_cpu,
    resolve_device,
    resolve_precision,
)
from vlrouter.features.spec import FeatureSpec, FeatureSpecMismatch

TEXTS = ["How many cats are in the photo?", "Count the cats in this picture.", "What is the GDP of France in 2010?",
         "Solve for x: 2x + 3 = 11, step by step.", "Which option is correct? (A) 3 (B) 4 (C) 5", "hi",
         "Read the text on the sign in the top left corner of the image, then translate it into German."]
ENCODERS = [("open_clip", "open_clip_dir"), ("hf_siglip", "hf_siglip_dir"), ("hf_text", "tiny_bert_dir")]
# Measured on these inputs (torch 2.13, x86 CPU): the tiny random encoders >= 0.9998 (bf16 and int8);
# the real all-MiniLM-L6-v2 >= 0.9999 (bf16) and >= 0.988, mean 0.9965 (int8; "hi" is the lowest).
MIN_COS_TINY, MIN_COS_REAL = 0.99, 0.98


def items(modality: str) -> list:
    if modality == "text":
        return TEXTS
    rng = np.random.default_rng(1)
    photos = [Image.fromarray(rng.integers(0, 255, (30 + 9 * i, 41, 3), dtype=np.uint8)) for i in range(4)]
    return [*photos, Image.new("RGB", (64, 64), "navy")]


def make(kind: str, path, precision: str):
    return build_encoder(EncoderConfig(kind=kind, path=path, precision=precision), "cpu")


@pytest.fixture(scope="module")
def encoders(request) -> dict:
    """(kind, precision) -> encoder, built once for the module."""
    return {(kind, p): make(kind, request.getfixturevalue(fixture), p)
            for kind, fixture in ENCODERS for p in ("fp32", "bf16", "int8")}


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize(("kind", "fixture"), ENCODERS)
def test_each_precision_returns_unit_float32_rows(encoders, kind, fixture, precision):
    enc = encoders[kind, precision]
    batch = enc.encode(items(enc.modality))
    assert enc.precision == precision and batch.shape == (len(items(enc.modality)), enc.dim)
    assert batch.dtype == np.float32 and np.isfinite(batch).all()
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert enc.name.endswith("" if precision == "fp32" else f"@{precision}")
    assert enc.dim == encoders[kind, "fp32"].dim


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize(("kind", "fixture"), ENCODERS)
def test_low_precision_agrees_with_fp32(encoders, kind, fixture, precision):
    ref = encoders[kind, "fp32"]
    data = items(ref.modality)
    cos = (encoders[kind, precision].encode(data) * ref.encode(data)).sum(1)
    assert cos.min() >= MIN_COS_TINY, cos


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_real_minilm_weights_agree_with_fp32(minilm_dir, precision):
    ref, low = make("hf_text", minilm_dir, "fp32"), make("hf_text", minilm_dir, precision)
    cos = (low.encode(TEXTS) * ref.encode(TEXTS)).sum(1)
    assert cos.min() >= MIN_COS_REAL, cos
    a, b, c = low.encode(TEXTS[:3])
    assert float(a @ b) > float(a @ c) + 0.2  # still a real encoder: paraphrases are closer


@pytest.mark.parametrize(("kind", "fixture"), ENCODERS)
def test_int8_batched_equals_single(encoders, kind, fixture):
    enc = encoders[kind, "int8"]
    data = items(enc.modality)
    np.testing.assert_array_equal(enc.encode(data), np.concatenate([enc.encode([x]) for x in data]))


def test_int8_replaces_linear_layers_and_traces(encoders):
    torch = import_torch()
    enc = encoders["hf_text", "int8"]
    assert not any(type(m) is torch.nn.Linear for m in enc.model.modules())
    assert enc.traced and encoders["open_clip", "int8"].traced and encoders["hf_text", "bf16"].traced
    assert not encoders["hf_text", "fp32"].traced  # the reference stays the eager model


def test_a_failing_trace_falls_back_to_eager(tiny_bert_dir, monkeypatch):
    torch = import_torch()

    def broken(*args, **kwargs):
        raise RuntimeError("no tracing here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    enc = make("hf_text", tiny_bert_dir, "int8")
    assert not enc.traced and enc.encode(TEXTS[:2]).shape == (2, enc.dim)


def test_auto_rule():
    torch = import_torch()
    assert resolve_precision("auto", "cpu") == ("int8" if fast_int8_cpu() else "fp32")
    assert resolve_precision("auto", "cpu", torch.float32) == "fp32"  # an explicit features.dtype wins
    assert resolve_precision("auto", "cpu", torch.bfloat16) == "bf16"
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("bf16", "cpu", torch.float32) == "bf16"  # an explicit precision wins
    with pytest.raises(EncoderLoadError, match="CPU-only"):
        resolve_precision("int8", "cuda")
    assert resolve_device("cpu", "auto") == ("cpu", None)


def test_invalid_precision_is_a_config_error(tmp_path):
    with pytest.raises(ValidationError, match="precision"):
        EncoderConfig(kind="hf_text", path=tmp_path, precision="int4")
    with pytest.raises(ValidationError, match="CPU-only"):
        FeaturesConfig(device="cuda", text_encoder={"kind": "hf_text", "path": tmp_path, "precision": "int8"})
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"features:\n  text_encoder: {{kind: hf_text, path: {tmp_path}, precision: fp8}}\n")
    with pytest.raises(ConfigError, match=r"features\.text_encoder\.precision"):
        load_settings(cfg)


def test_pipeline_spec_records_precision(features_config):
    config = features_config.model_copy(update={
        "image_encoder": features_config.image_encoder.model_copy(update={"precision": "int8"}),
        "text_encoder": features_config.text_encoder.model_copy(update={"precision": "bf16"})})
    spec = FeaturePipeline(config).spec
    assert spec.precisions == {"image": "int8", "text": "bf16"}
    assert spec.image_encoder.endswith("@int8") and "@bf16" in spec.describe()


def test_spec_accepts_another_precision_of_the_same_encoders():
    fp32 = FeatureSpec("open_clip:vit", 768, "hf_text:bge", 384, ("a", "b"))
    int8 = FeatureSpec("open_clip:vit@int8", 768, "hf_text:bge@int8", 384, ("a", "b"))
    assert fp32.precisions == {"image": "fp32", "text": "fp32"} and int8.precisions["image"] == "int8"
    assert int8 != fp32 and int8.without_precision() == fp32
    int8.require_same(fp32)  # an fp32-trained checkpoint serves int8 features
    with pytest.raises(FeatureSpecMismatch, match="@int8"):
        int8.require_same(fp32, strict_precision=True)
    other = FeatureSpec("open_clip:other@int8", 768, "hf_text:bge", 384, ("a", "b"))
    with pytest.raises(FeatureSpecMismatch):
        other.require_same(fp32)  # another encoder is still refused
    assert FeatureSpec.from_dict(int8.to_dict()) == int8
