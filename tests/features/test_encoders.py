from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlrouter.config import EncoderConfig
from vlrouter.features.encoders import EncoderLoadError, build_encoder, resolve_device


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def make(kind: str, path, **kw):
    return build_encoder(EncoderConfig(kind=kind, path=path, **kw), *resolve_device("cpu", "float32"))


@pytest.mark.parametrize(("kind", "fixture", "dim"), [("open_clip", "open_clip_dir", 32),
                                                      ("hf_siglip", "hf_siglip_dir", 64)])
def test_image_encoders_dims_determinism_and_batching(request, kind, fixture, dim):
    enc = make(kind, request.getfixturevalue(fixture))
    assert enc.dim == dim and enc.modality == "image"
    batch = enc.encode(images(5))
    assert batch.shape == (5, dim) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    singles = np.stack([enc.encode([img])[0] for img in images(5)])
    np.testing.assert_allclose(batch, singles, atol=1e-5)  # batched == single
    np.testing.assert_array_equal(enc.encode(images(2)), enc.encode(images(2)))  # deterministic


def test_text_encoder_cls_pooling_and_batching(tiny_bert_dir):
    enc = make("hf_text", tiny_bert_dir)
    assert enc.pooling == "cls"  # BGE convention when the folder declares nothing
    texts = ["short", "a much longer question about the picture with many words", "third"]
    batch = enc.encode(texts)
    assert batch.shape == (3, 32)
    np.testing.assert_allclose(batch, np.stack([enc.encode([t])[0] for t in texts]), atol=1e-5)


def test_real_minilm_weights_load_with_mean_pooling(minilm_dir):
    enc = make("hf_text", minilm_dir)
    assert enc.pooling == "mean" and enc.dim == 384
    a, b, c = enc.encode(["How many cats are in the photo?", "Count the cats in this picture.",
                          "What is the GDP of France in 2010?"])
    assert float(a @ b) > float(a @ c) + 0.2  # real weights: paraphrases are closer


def test_local_paths_only(tmp_path, open_clip_dir):
    with pytest.raises(EncoderLoadError, match="no model"):
        make("hf_text", tmp_path / "missing")
    with pytest.raises(EncoderLoadError, match=r"open_clip_config\.json"):
        make("open_clip", tmp_path)
    with pytest.raises(EncoderLoadError, match="arch"):
        make("open_clip", open_clip_dir / "open_clip_model.safetensors")
