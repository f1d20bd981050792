"""The core's end-to-end job: `sciffusion toy` (train / sample / evaluate)."""

from __future__ import annotations

import json
import time

import pytest
from sciffusion.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.mark.slow
def test_toy_cli_train_sample_evaluate_fast(tmp_path):
    """Budget: 40 s on 2 cores (Lightning start-up dominates)."""
    out = tmp_path / "toy"
    r = runner.invoke(app, ["toy", "train", "--out", str(out), "--fast", "--steps", "30"])
    assert r.exit_code == 0, r.output
    assert (out / "model" / "config.json").is_file() and (out / "config.toml").is_file()
    r = runner.invoke(app, ["toy", "sample", "--model", str(out), "--nfe", "8", "--n", "300"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["toy", "sample", "--model", str(out), "--nfe", "8"])
    assert r.exit_code == 2 and "--force" in r.output  # samples.npy is never overwritten silently
    r = runner.invoke(app, ["toy", "sample", "--model", str(out), "--solver", "nope", "--force"])
    assert r.exit_code == 2 and "unknown solver 'nope'" in " ".join(r.output.split())
    r = runner.invoke(app, ["toy", "evaluate", "--run", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_samples"] == 300 and m["sliced_w2_floor"] > 0
    assert (out / "toy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_toy_train_resumes_from_its_checkpoint(tmp_path):
    """Budget: 30 s on 2 cores."""
    out = tmp_path / "toy"
    args = ["toy", "train", "--out", str(out), "--fast", "--steps", "20"]
    assert runner.invoke(app, args).exit_code == 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    r = runner.invoke(app, [*args[:-1], "40", "--resume"])
    assert r.exit_code == 0, r.output


@pytest.mark.slow
def test_toy_default_settings_reach_twice_the_floor_in_three_minutes(tmp_path):
    """Acceptance of the foundation issue. Budget: 3 minutes on 2 cores (about 2 quiet)."""
    from sciffusion.toy import ToyConfig, run_toy

    t0 = time.perf_counter()
    m = run_toy(ToyConfig(), tmp_path / "toy", progress=False)
    elapsed = time.perf_counter() - t0
    print(
        f"toy: sliced W2 {m['sliced_w2']:.4f}, floor {m['sliced_w2_floor']:.4f},"
        f" ratio {m['ratio_to_floor']:.2f}, mode TV {m['mode_weight_tv']:.3f}, {elapsed:.0f} s"
    )
    assert m["ratio_to_floor"] < 2.0
    assert m["mode_weight_tv"] < 0.05
    assert elapsed < 180
