"""Run every benchmark in this folder, each in its own process; each writes its section of
``docs/benchmarks.md``.

    python benchmarks/run_all.py            # full settings (what docs/benchmarks.md shows)
    python benchmarks/run_all.py --fast     # CI's smallest settings
    python benchmarks/run_all.py --doc /tmp/bench.md --only solvers inverse

Every benchmark script takes ``--fast`` and ``--doc PATH``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("solvers", "inverse", "mri")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="smallest settings (CI)")
    p.add_argument("--doc", default=None, help="report file (default docs/benchmarks.md)")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    a = p.parse_args(argv)
    failed = []
    for name in a.only:
        cmd = [sys.executable, str(HERE / f"{name}.py")]
        cmd += ["--fast"] if a.fast else []
        cmd += ["--doc", a.doc] if a.doc else []
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
