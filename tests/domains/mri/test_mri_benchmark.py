"""The MRI benchmark's report plumbing, and its ``--fast`` run end to end (shipped priors)."""

from __future__ import annotations

import pytest
from sciffusion.domains.mri.benchmark import format_table, main, write_section

ROW = {
    "size": 64,
    "coils": 1,
    "R": 8.0,
    "method": "TV",
    "lam": 0.003,
    "psnr": 20.0,
    "ssim": 0.5,
    "fg_ssim": 0.4,
    "nmse": 0.1,
    "sec": 0.1,
    "nfe": 0,
}


def test_write_section_creates_and_replaces(tmp_path):
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    write_section(doc, "first")
    text = doc.read_text()
    assert (
        text.startswith("# Benchmarks\n") and "<!-- mri:start -->\nfirst\n<!-- mri:end -->" in text
    )
    doc.write_text(text + "\n<!-- solvers:start -->\nkeep\n<!-- solvers:end -->\n")
    write_section(doc, "second")
    text = doc.read_text()
    assert "first" not in text and "second" in text and "keep" in text
    assert text.count("<!-- mri:start -->") == 1


def test_format_table():
    t = format_table([ROW])
    assert t.splitlines()[2].startswith("| 64 | 1 | 8x | TV (λ=0.003) | 20.00 |")


@pytest.mark.slow
def test_fast_benchmark_end_to_end(tmp_path):
    """``benchmarks/mri.py --fast`` with the shipped priors. Budget: about 60 s on 2 cores."""
    doc = tmp_path / "benchmarks.md"
    rows = main(["--fast", "--doc", str(doc)])
    methods = {r["method"] for r in rows}
    assert {"zero-filled", "TV-ADMM"} <= methods
    assert any(m.startswith("cond") for m in methods) and any("entropy" in m for m in methods)
    assert "<!-- mri:start -->" in doc.read_text()
    for r in rows:
        assert r["psnr"] > 10
