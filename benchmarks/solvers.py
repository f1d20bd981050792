"""Solver benchmark (docs/benchmarks.md, section ``solvers``): our samplers vs diffusers' schedulers
on the exact Gaussian-mixture oracle. The implementation is :mod:`sciffusion.solvers.bench`.

    python benchmarks/solvers.py            # full run (a few minutes on 2 cores)
    python benchmarks/solvers.py --fast     # CI setting (well under a minute)
    python benchmarks/solvers.py --doc /tmp/bench.md   # write the section elsewhere
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description="sciffusion solver benchmark")
    ap.add_argument("--fast", action="store_true", help="CI setting (well under a minute)")
    ap.add_argument("--doc", default=str(DOCS), help="report file (default docs/benchmarks.md)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from sciffusion.solvers.bench import benchmark

    command = "python benchmarks/solvers.py" + (" --fast" if args.fast else "")
    write = None if args.no_write else Path(args.doc)
    return benchmark(fast=args.fast, write=write, command=command)


if __name__ == "__main__":
    main()
