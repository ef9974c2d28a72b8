#!/usr/bin/env python
"""Per-item time of the raw encoders at batch 1, 4, 8 and 16: does batching buy throughput?

The encoders are the production shapes of ``scripts/bench_features.py`` (random-init SigLIP
ViT-B/16 at 224 px and bge-small-en-v1.5, fp32), called directly (no pipeline, no batcher wait).
README's "Feature benchmark" cites these figures: a compute-bound tower costs the same per item at
every batch size, so micro-batching cannot add throughput to it.

Usage: scripts/bench_encoder_batches.py [--batches 1,4,8,16] [--repeats 3] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import base_config, build_models, photo, question

from vlrouter.features import FeaturePipeline


def per_item_ms(encoder, items: list, repeats: int) -> float:
    """Median over ``repeats`` calls of one batch's time, divided by the batch size (one warm-up call)."""
    encoder.encode(items)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode(items)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000 / len(items), 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,4,8,16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the pipeline's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        siglip, bge = build_models(Path(tmp))
        pipeline = FeaturePipeline(base_config(siglip, bge, "fp32", args.threads))
        image, text = pipeline.image.encoder, pipeline.text.encoder
        report = {"batches": batches, "repeats": args.repeats, "image_ms_per_item": {}, "text_ms_per_item": {}}
        for b in batches:
            report["image_ms_per_item"][b] = per_item_ms(image, [photo(224, 100 + i).image for i in range(b)],
                                                         args.repeats)
            report["text_ms_per_item"][b] = per_item_ms(text, [question(200 + i) for i in range(b)], args.repeats)
            print(f"batch {b:>2}: image {report['image_ms_per_item'][b]:8.2f} ms/item   "
                  f"text {report['text_ms_per_item'][b]:6.2f} ms/item", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
