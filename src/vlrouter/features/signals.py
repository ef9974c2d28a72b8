"""Cheap, deterministic complexity signals of a query (INAR-VL style).

Image signals are computed on an RGB thumbnail of at most ``THUMB`` px on the long side (a freshly
opened JPEG is decoded at reduced scale with ``draft``, so a 1024 px photo never decodes at full size).
Every signal is a float on a comparable scale (roughly 0..1 or a log); the router's scaler
standardises them. The order of ``IMAGE_SIGNALS`` + ``TEXT_SIGNALS`` is part of the FeatureSpec.
"""

from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image

THUMB = 256

IMAGE_SIGNALS = (
    "has_image", "n_images", "log_pixels", "log_aspect", "entropy", "edge_density", "colourfulness",
    "bytes_per_pixel", "text_likeness",
)
QUESTION_TYPES = ("counting", "ocr", "math", "yes_no", "description")
TEXT_SIGNALS = (
    "log_words", "log_chars", *(f"q_{t}" for t in QUESTION_TYPES), "digit_ratio", "has_formula", "non_ascii_ratio",
    "n_choices",
)
SIGNALS = IMAGE_SIGNALS + TEXT_SIGNALS

_QUESTION_PATTERNS = {
    "counting": re.compile(r"\b(how many|count|number of)\b", re.I),
    "ocr": re.compile(r"\b(read|text|written|says?|title|label|sign|caption|word|letters?|ocr)\b", re.I),
    "math": re.compile(r"\b(calculate|compute|solve|sum|difference|product|equation|angle|area|perimeter|"
                       r"percent|ratio|average|mean|value of|integral|derivative)\b|[=+\-*/^]\s*\d", re.I),
    "yes_no": re.compile(r"^\s*(is|are|does|do|did|can|could|was|were|has|have|will|should)\b", re.I),
    "description": re.compile(r"\b(describe|what is (in|shown)|what's in|caption|tell me about)\b", re.I),
}
_FORMULA = re.compile(r"[=^√∑∫π]|\d\s*[+\-*/x×÷]\s*\d|\\frac|\b(sin|cos|tan|log)\s*\(", re.I)
_CHOICES = re.compile(r"(?:^|\s)\(?[A-Ea-e][).:]\s", re.M)


def _thumb(image: Image.Image) -> Image.Image:
    """An RGB thumbnail of at most THUMB px; a not-yet-decoded JPEG is decoded at reduced scale."""
    if image.format == "JPEG":
        image.draft("RGB", (THUMB, THUMB))  # 1/2, 1/4 or 1/8 scale; no-op once the image is loaded
    thumb = image.convert("RGB")
    if max(thumb.size) > THUMB:
        thumb = thumb.copy() if thumb is image else thumb
        thumb.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return thumb


def _colourfulness(thumb: Image.Image) -> float:
    """Hasler & Süsstrunk (2003) on a 64 px RGB thumbnail, scaled to about 0..1."""
    small = thumb.copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    value = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    return value / 100.0


def image_signals(image: Image.Image, encoded_bytes: int | None = None) -> dict[str, float]:
    """Signals of one image; ``encoded_bytes`` is the size of the file it was decoded from."""
    width, height = image.size
    pixels = width * height
    thumb = _thumb(image)
    grey = np.asarray(thumb.convert("L"), dtype=np.float32)
    hist = np.bincount(grey.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum()) / 8.0  # bits / 8 -> 0..1
    gx = np.abs(np.diff(grey, axis=1))
    gy = np.abs(np.diff(grey, axis=0))
    strong_x = gx > 32.0
    edge_density = float((strong_x.mean() + (gy > 32.0).mean()) / 2.0) if grey.size > 1 else 0.0
    # text-likeness: rows with many sharp horizontal transitions (strokes of glyphs) are typical of
    # rendered text; the share of such rows is a cheap OCR-ish density.
    if strong_x.shape[1] > 0:
        transitions = strong_x.mean(axis=1)
        text_likeness = float((transitions > 0.08).mean())
    else:
        text_likeness = 0.0
    return {
        "log_pixels": math.log10(max(pixels, 1)) / 8.0,
        "log_aspect": math.log(width / height) if height else 0.0,
        "entropy": entropy,
        "edge_density": edge_density,
        "colourfulness": _colourfulness(thumb),
        "bytes_per_pixel": (encoded_bytes / pixels) if encoded_bytes and pixels else 0.0,
        "text_likeness": text_likeness,
    }


def text_signals(text: str) -> dict[str, float]:
    words = text.split()
    chars = len(text)
    digits = sum(c.isdigit() for c in text)
    non_ascii = sum(ord(c) > 127 for c in text)
    out = {
        "log_words": math.log1p(len(words)) / 6.0,
        "log_chars": math.log1p(chars) / 8.0,
        "digit_ratio": digits / chars if chars else 0.0,
        "has_formula": 1.0 if _FORMULA.search(text) else 0.0,
        "non_ascii_ratio": non_ascii / chars if chars else 0.0,
        "n_choices": min(len(_CHOICES.findall(text)), 10) / 10.0,
    }
    for name, pattern in _QUESTION_PATTERNS.items():
        out[f"q_{name}"] = 1.0 if pattern.search(text) else 0.0
    return out


def query_signals(text: str, images: list[tuple[Image.Image, int | None]]) -> np.ndarray:
    """All signals in ``SIGNALS`` order. Several images: per-image signals are averaged."""
    values: dict[str, float] = dict.fromkeys(IMAGE_SIGNALS, 0.0)
    if images:
        per_image = [image_signals(img, nbytes) for img, nbytes in images]
        for key in per_image[0]:
            values[key] = float(np.mean([s[key] for s in per_image]))
        values["has_image"] = 1.0
        values["n_images"] = math.log1p(len(images))
    values.update(text_signals(text))
    return np.array([values[name] for name in SIGNALS], dtype=np.float32)
