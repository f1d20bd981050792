"""CI runs every benchmark's smallest setting (``--fast``), writing to a scratch report.

Benchmarks are not timed unit tests: this checks that each script runs end to end, prints its
table and writes exactly its own marked section, leaving other sections alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p.stem for p in (ROOT / "benchmarks").glob("*.py") if not p.stem.startswith(("_", "run_all"))
)


def test_run_all_knows_every_benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    assert sorted(run_all.BENCHMARKS) == SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_fast_setting_writes_its_section(name, tmp_path):
    """Budget: ~30-90 s per benchmark on 2 cores."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- other:start -->\nkeep me\n<!-- other:end -->\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--fast", "--doc", str(doc)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "|" in run.stdout  # the table is printed
    text = doc.read_text()
    assert "keep me" in text
    assert text.count(f"<!-- {name}:start -->") == 1 and f"<!-- {name}:end -->" in text
