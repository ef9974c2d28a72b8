"""SYNTHETIC routing benchmark: generated images and questions with simulated model outcomes.

Nothing here is a measurement of a real model. Each query gets a generated image (coloured shapes,
distractor clutter, optionally rendered text, plain or noisy background) and a question of one of
five types. A documented difficulty ``d`` in [0, 1] drives every simulated outcome:

    d = base[type] + 0.04 * n_target (counting) + 0.035 * n_distractors + 0.15 * noisy_background
        + 0.25 * small_text (ocr) + 0.1 * long_text (ocr), clipped to [0, 1]
    base = colour 0.05, yes_no 0.15, counting 0.25, ocr 0.35, reasoning 0.55

    P(correct | model) = sigmoid(slope_m * (skill_m + bonus_m[type] + blind_m[colour] + blind_m[shape] - d))

The edge models are cheap, fast and low-energy but fall off quickly with ``d``. They are also
weak on OCR and reasoning; edge-small is weak at counting, which edge-base does well. The cloud
model is robust and slow, and it costs energy and money. So
easy colour and yes/no questions belong on the edge, while cluttered counting, small text and
reasoning belong in the cloud: the image and question properties a router can see decide it.

``blind`` models content blind spots, as small VLMs have them: the edge models confuse purple and
orange and are weak on triangles (the target's colour and shape, named in most questions and
drawn in every image). Difficulty ``d`` is what cheap complexity signals (clutter, text, question
type) can see; the blind spots are semantics that only the image and text embeddings carry.
``blind_scale`` multiplies every blind-spot offset (1.0 by default; 0 removes them). At 1.0 the
bench is mostly what the signals measure; larger values (the "semantic" variant, 2.5 in README)
make content matter more, as it does for real small VLMs, and test whether a router reads it.
Latency, energy and cost are simulated too (with noise), from per-model constants below.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
           "purple": (140, 60, 180), "orange": (240, 140, 30)}
SHAPES = ("circle", "square", "triangle")
TYPES = ("colour", "yes_no", "counting", "ocr", "reasoning")
BASE = {"colour": 0.05, "yes_no": 0.15, "counting": 0.25, "ocr": 0.35, "reasoning": 0.55}
WORDS = ("exit", "open", "sale", "stop", "north", "cafe", "level", "gate", "route", "price", "delta", "total")


@dataclass(frozen=True)
class SimModel:
    name: str
    tier: str
    skill: float
    slope: float
    bonus: dict
    blind: dict  # target colour / shape -> skill offset
    latency_s: float  # mean seconds for an answer
    energy_j: float   # mean joules per answer
    cost_usd: float   # per query (edge: amortised hardware + power)


MODELS = (
    SimModel("edge-small", "edge", 0.42, 9.0, {"ocr": -0.12, "reasoning": -0.15, "counting": -0.2},
             {"purple": -0.2, "orange": -0.15, "triangle": -0.12}, 0.3, 5.0, 2e-5),
    SimModel("edge-base", "edge", 0.55, 8.0, {"ocr": -0.08, "reasoning": -0.1, "counting": 0.1},
             {"purple": -0.12, "triangle": -0.15}, 0.4, 7.0, 5e-5),
    SimModel("cloud-large", "cloud", 0.85, 6.0, {"ocr": 0.08, "reasoning": 0.2}, {}, 1.4, 35.0, 2e-3),
)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        x0, y0, x1, y1 = box
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def make_query(i: int, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    qtype = TYPES[rng.choice(len(TYPES), p=[0.2, 0.2, 0.25, 0.2, 0.15])]
    size = int(rng.choice([224, 320, 448]))
    noisy = bool(rng.random() < 0.35)
    if noisy:
        arr = rng.integers(90, 200, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(200, 255, 3)))
    draw = ImageDraw.Draw(img)
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    n_target = int(rng.integers(1, 9 if qtype in ("counting", "reasoning") else 3))
    n_distract = int(rng.integers(0, 12))
    for k in range(n_target + n_distract):
        s = int(rng.integers(size // 14, size // 6))
        x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
        if k < n_target:
            c, sh = COLOURS[colour], shape
        else:
            c = COLOURS[str(rng.choice([n for n in COLOURS if n != colour]))]
            sh = str(rng.choice(SHAPES))
        _draw_shape(draw, sh, (x, y, x + s, y + s), c)
    text, small_text = None, False
    if qtype == "ocr" or rng.random() < 0.2:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        small_text = bool(rng.random() < 0.5)
        font_px = int(size / (28 if small_text else 12))
        draw.text((int(size * 0.05), int(size * rng.uniform(0.05, 0.85))), text.upper(), fill=(0, 0, 0),
                  font=_font(font_px))
    plural = shape + "s"
    question = {
        "colour": f"What colour are the {plural} in the image?",
        "yes_no": f"Is there a {colour} {shape} in the image?",
        "counting": f"How many {colour} {plural} are there in the image?",
        "ocr": "What does the text in the image say? Read it exactly.",
        "reasoning": f"If two {colour} {plural} were removed, how many {colour} {plural} would remain? "
                     "Explain step by step.",
    }[qtype]
    d = BASE[qtype] + 0.035 * n_distract + 0.15 * noisy
    if qtype in ("counting", "reasoning"):
        d += 0.04 * n_target
    if qtype == "ocr":
        d += 0.25 * small_text + 0.1 * (text is not None and len(text) > 12)
    d = float(min(1.0, max(0.0, d)))
    meta = {"type": qtype, "difficulty": round(d, 4), "colour": colour, "shape": shape, "n_target": n_target,
            "n_distractors": n_distract,
            "noisy_background": noisy, "text": text, "small_text": small_text, "size": size}
    return img, {"question": question, "meta": meta}


def outcome(model: SimModel, meta: dict, rng: np.random.Generator, image_bytes: int, blind_scale: float = 1.0) -> dict:
    d = meta["difficulty"]
    blind = model.blind.get(meta["colour"], 0.0) + model.blind.get(meta["shape"], 0.0)
    skill = model.skill + model.bonus.get(meta["type"], 0.0) + blind_scale * blind
    p = 1.0 / (1.0 + math.exp(-model.slope * (skill - d)))
    out_tokens = 40 if meta["type"] == "reasoning" else 8
    upload = image_bytes / 1e6 * (0.4 if model.tier == "cloud" else 0.0)
    return {
        "quality": float(rng.random() < p),
        "cost_usd": round(model.cost_usd * (1 + out_tokens / 40), 8),
        "latency_s": round(model.latency_s * float(rng.lognormal(0, 0.15)) * (1 + out_tokens / 80) + upload, 4),
        "energy_j": round(model.energy_j * float(rng.lognormal(0, 0.1)) * (1 + out_tokens / 80), 3),
        "p_correct": round(p, 4),
    }


def make_synthetic_bench(out: str | Path, n: int = 2000, *, seed: int = 0, blind_scale: float = 1.0,
                         progress: bool = True) -> Path:
    from tqdm.auto import tqdm

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = np.array(["train"] * int(0.7 * n) + ["dev"] * int(0.1 * n))
    splits = np.concatenate([splits, np.array(["test"] * (n - len(splits)))])
    rng.shuffle(splits)
    (out / "models.json").write_text(json.dumps([{"name": m.name, "tier": m.tier} for m in MODELS], indent=1))
    with open(out / "queries.jsonl", "w") as fq, open(out / "outcomes.jsonl", "w") as fo:
        for i in tqdm(range(n), desc="synthetic bench", disable=not progress, unit="q"):
            img, q = make_query(i, rng)
            rel = f"images/{i:05d}.jpg"
            img.save(out / rel, "JPEG", quality=88)
            nbytes = (out / rel).stat().st_size
            fq.write(json.dumps({"id": f"syn-{i:05d}", "text": q["question"], "image": rel, "split": str(splits[i]),
                                 "synthetic": True, "meta": q["meta"]}) + "\n")
            for m in MODELS:
                row = {"id": f"syn-{i:05d}", "model": m.name, **outcome(m, q["meta"], rng, nbytes, blind_scale)}
                fo.write(json.dumps(row) + "\n")
    (out / "README.md").write_text(
        "# SYNTHETIC routing benchmark\n\nGenerated by `scripts/make_synthetic_bench.py` "
        f"(n={n}, seed={seed}, blind_scale={blind_scale}). Images, questions and all model outcomes are simulated; see "
        "`src/vlrouter/eval/synthetic.py` for the documented difficulty model. Not real model results.\n")
    return out
