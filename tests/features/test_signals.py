from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from vlrouter.features.signals import SIGNALS, image_signals, query_signals, text_signals


def checkerboard(size=512, square=16) -> Image.Image:
    idx = np.indices((size, size)) // square
    return Image.fromarray(((idx[0] + idx[1]) % 2 * 255).astype(np.uint8)).convert("RGB")


def test_flat_image_has_no_edges_or_entropy():
    s = image_signals(Image.new("RGB", (300, 200), (120, 120, 120)))
    assert s["entropy"] == 0.0 and s["edge_density"] == 0.0 and s["text_likeness"] == 0.0
    assert s["colourfulness"] == pytest.approx(0.0, abs=1e-6)
    assert s["log_aspect"] == pytest.approx(np.log(1.5))


def test_checkerboard_has_high_edges_and_two_level_entropy():
    s = image_signals(checkerboard(size=256, square=8))  # no resize: exactly two grey levels
    assert s["entropy"] == pytest.approx(1 / 8, abs=0.01)  # two grey levels = 1 bit
    assert s["edge_density"] > 0.1
    assert image_signals(checkerboard(size=1024, square=32))["edge_density"] > 0.05  # also after downscaling


def test_photo_is_between(photo_jpeg):
    photo = Image.open(io.BytesIO(photo_jpeg))
    s = image_signals(photo, len(photo_jpeg))
    assert 0.5 < s["entropy"] <= 1.0 and s["colourfulness"] > 0.2
    assert 0 < s["bytes_per_pixel"] < 1


@pytest.mark.parametrize(("text", "kind"), [
    ("How many birds are there?", "counting"), ("What does the sign say?", "ocr"),
    ("Calculate the area of the triangle.", "math"), ("Is the door open?", "yes_no"),
    ("Describe the scene.", "description")])
def test_question_types(text, kind):
    s = text_signals(text)
    assert s[f"q_{kind}"] == 1.0


def test_text_signals_misc():
    s = text_signals("Solve x^2 + 3 = 12. (A) 3 (B) 4 (C) 5")
    assert s["has_formula"] == 1.0 and s["n_choices"] == pytest.approx(0.3) and s["digit_ratio"] > 0.1
    assert text_signals("Wie viele Äpfel sind auf dem Tisch? 日本")["non_ascii_ratio"] > 0


def test_query_signals_order_and_determinism(photo_jpeg):
    photo = Image.open(io.BytesIO(photo_jpeg)).convert("RGB")
    a = query_signals("What is it?", [(photo, len(photo_jpeg))])
    assert a.shape == (len(SIGNALS),) and a[SIGNALS.index("has_image")] == 1.0
    np.testing.assert_array_equal(a, query_signals("What is it?", [(photo, len(photo_jpeg))]))
    assert query_signals("no image", [])[SIGNALS.index("has_image")] == 0.0


def test_signals_are_cheap_on_a_1024px_image(photo_jpeg):
    """Behaviour, not a benchmark: a generous bound that catches an accidental full-size pass."""
    big = Image.open(io.BytesIO(photo_jpeg)).convert("RGB").resize((1024, 1024))
    started = time.perf_counter()
    for _ in range(5):
        query_signals("How many people are there?", [(big, 200_000)])
    assert (time.perf_counter() - started) / 5 < 0.25
