"""``sciffusion demo`` (what ``make demo`` runs) end to end in fast mode, twice into one folder."""

from __future__ import annotations

import json

import pytest
from sciffusion.cli.main import app
from typer.testing import CliRunner


@pytest.mark.slow
def test_demo_runs_and_reruns_with_force(tmp_path):
    """Budget: ~1 minute on 2 cores (toy fast + MRI fast, twice)."""
    out = tmp_path / "demo"
    first = CliRunner().invoke(app, ["demo", "--out", str(out), "--fast", "--seed", "1"])
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "summary.json").read_text())
    assert {"toy", "mri"} <= set(summary)
    assert summary["toy"]["ratio_to_floor"] < 5
    assert list((out / "mri").rglob("*.png"))
    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--fast"])
    assert again.exit_code != 0 and "--force" in again.output
    forced = CliRunner().invoke(app, ["demo", "--out", str(out), "--fast", "--force"])
    assert forced.exit_code == 0, forced.output
