"""One fusion rule for serving and datasets: ``fusion.fuse`` itself, and extract == encode_many == featurize."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from vlrouter.config import ImageLimits
from vlrouter.eval.dataset import load_dataset
from vlrouter.eval.featurize import featurize
from vlrouter.features import FeaturePipeline, FeatureSpec
from vlrouter.features.fusion import fuse, fuse_into
from vlrouter.media import decode_image_bytes

SPEC = FeatureSpec("img", 4, "txt", 3, ("s1", "s2"))
TEXT = np.array([0.0, 0.6, 0.8], np.float32)
SIGNALS = np.array([0.25, 7.0], np.float32)


# ------------------------------------------------------------------ fusion itself
@pytest.mark.parametrize("rows", [None, np.zeros((0, 4), np.float32)])
def test_no_images_give_a_zero_image_block(rows):
    v = fuse(SPEC, rows, TEXT, SIGNALS)
    assert v.dtype == np.float32 and v.shape == (SPEC.dim,)
    assert not v[SPEC.slices()["image"]].any()


def test_image_rows_are_averaged_then_l2_normalised():
    rows = np.array([[3, 0, 0, 0], [0, 4, 0, 0]], np.float32)
    np.testing.assert_allclose(fuse(SPEC, rows, TEXT, SIGNALS)[SPEC.slices()["image"]], [0.6, 0.8, 0, 0], atol=1e-7)
    cancelling = np.array([[1, 0, 0, 0], [-1, 0, 0, 0]], np.float32)  # mean 0: zeros, not NaN
    assert not fuse(SPEC, cancelling, TEXT, SIGNALS)[SPEC.slices()["image"]].any()


def test_blocks_follow_spec_slices():
    rows = np.array([[0, 0, 2, 0]], np.float32)
    v = fuse(SPEC, rows, TEXT, SIGNALS)
    sl = SPEC.slices()
    assert [sl[k] for k in ("image", "text", "signals")] == [slice(0, 4), slice(4, 7), slice(7, 9)]
    np.testing.assert_array_equal(v[sl["image"]], [0, 0, 1, 0])
    np.testing.assert_array_equal(v[sl["text"]], TEXT)
    np.testing.assert_array_equal(v[sl["signals"]], SIGNALS)
    out = np.full((2, SPEC.dim), np.nan, np.float32)
    fuse_into(out[1], SPEC, rows, TEXT, SIGNALS)  # a row of a dataset matrix, in place
    np.testing.assert_array_equal(out[1], v)


def test_encoderless_spec_and_shape_errors():
    bare = FeatureSpec(None, 0, None, 0, ("s1", "s2"))
    np.testing.assert_array_equal(fuse(bare, None, None, SIGNALS), SIGNALS)
    with pytest.raises(ValueError, match="text block"):
        fuse(SPEC, None, TEXT[:2], SIGNALS)
    with pytest.raises(ValueError, match="image rows"):
        fuse(SPEC, np.ones((1, 5), np.float32), TEXT, SIGNALS)
    with pytest.raises(ValueError, match="signals block"):
        fuse(SPEC, None, TEXT, SIGNALS[:1])
    with pytest.raises(ValueError, match="extras"):
        fuse(FeatureSpec("img", 4, "txt", 3, ("s1", "s2"), extras=("x",), extras_dim=1), None, TEXT, SIGNALS)


# ------------------------------------------------------------------ serving path == dataset path
def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48 + 8 * seed, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def queries(photo_jpeg):
    """(text, [image bytes]): text only, one image, two images, blank / empty text; lengths vary (padding)."""
    return [
        ("How many people are in this photo? Count them carefully, one by one, and explain.", [photo_jpeg]),
        ("text only question about nothing in particular", []),
        ("Compare the two images: which one has more red? (A) left (B) right", [png(2), png(3)]),
        (" ", []),
        ("", [png(4)]),
        ("Why?", [png(5), photo_jpeg]),
    ]


@pytest.fixture(scope="module")
def pipeline(features_config):
    return FeaturePipeline(features_config.model_copy(update={"cache_entries": 0}))


def _decode(data: list[bytes]):
    return [decode_image_bytes(b, ImageLimits()) for b in data]


def _served(pipeline, queries, *, concurrent: bool) -> np.ndarray:
    async def run():
        calls = [pipeline.extract(t, _decode(imgs)) for t, imgs in queries]
        if concurrent:  # micro-batched together, as under load
            return await asyncio.gather(*calls)
        return [await c for c in calls]

    return np.stack([f.vector for f in asyncio.run(run())])


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_extract_equals_encode_many(pipeline, queries, batch_size):
    texts, images = [t for t, _ in queries], [_decode(imgs) for _, imgs in queries]
    matrix = pipeline.encode_many(texts, images, batch_size=batch_size, progress=False)
    for concurrent in (False, True):
        served = _served(pipeline, queries, concurrent=concurrent)
        assert served.dtype == matrix.dtype == np.float32 and served.shape == matrix.shape
        np.testing.assert_allclose(served, matrix, rtol=0, atol=1e-6)
    sl = pipeline.spec.slices()
    assert not matrix[[1, 3], sl["image"]].any() and matrix[[0, 2, 4, 5], sl["image"]].any()


def test_extract_equals_featurize(pipeline, queries, tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    rows = []
    for i, (text, imgs) in enumerate(queries):
        names = []
        for j, data in enumerate(imgs):
            ext = "jpg" if data.startswith(b"\xff\xd8") else "png"
            names.append(f"q{i}_{j}.{ext}")
            (root / names[-1]).write_bytes(data)
        rows.append({"id": f"q{i}", "text": text, "image": names[0] if len(names) == 1 else None,
                     "split": "train", **({"images": names} if len(names) > 1 else {})})
    (root / "models.json").write_text(json.dumps([{"name": "e", "tier": "edge"}, {"name": "c", "tier": "cloud"}]))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "outcomes.jsonl").write_text("".join(json.dumps({"id": r["id"], "model": m, "quality": 1.0}) + "\n"
                                                 for r in rows for m in ("e", "c")))
    X = featurize(load_dataset(root), pipeline, cache_dir=None, progress=False, batch_size=4)
    np.testing.assert_allclose(_served(pipeline, queries, concurrent=False), X, rtol=0, atol=1e-6)
