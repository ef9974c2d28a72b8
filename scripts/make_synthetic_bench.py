#!/usr/bin/env python
"""Write the SYNTHETIC routing benchmark (generated images, questions and simulated outcomes).

See src/vlrouter/eval/synthetic.py for the documented model of which tier answers well.
Usage: scripts/make_synthetic_bench.py --n 2000 --out data/synthetic [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlrouter.eval.synthetic import make_synthetic_bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of queries (default 2000)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = make_synthetic_bench(args.out, args.n, seed=args.seed)
    print(f"wrote SYNTHETIC benchmark with {args.n} queries to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
