#!/usr/bin/env python
"""Write the SYNTHETIC routing benchmark (generated images, questions and simulated outcomes).

See src/vlrouter/eval/synthetic.py for the documented model of which tier answers well.
Usage: scripts/make_synthetic_bench.py --n 2000 --out data/synthetic [--seed 0] [--blind-scale 1.0]
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
    parser.add_argument("--blind-scale", type=float, default=1.0,
                        help="multiplier of the edge models' content blind spots (default 1.0; 2.5 is the "
                             "'semantic' variant where content the signals cannot see matters more; 0 removes them)")
    args = parser.parse_args()
    if args.n < 10 or args.blind_scale < 0:
        parser.error("--n must be >= 10 and --blind-scale >= 0")
    path = make_synthetic_bench(args.out, args.n, seed=args.seed, blind_scale=args.blind_scale)
    print(f"wrote SYNTHETIC benchmark with {args.n} queries to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
