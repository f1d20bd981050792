"""CLI root: version, info, lazy sub-apps, config errors, output safety."""

from __future__ import annotations

import subprocess
import sys

from sciffusion._version import __version__
from sciffusion.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def test_version_and_info():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0
    for key in ("torch", "extras", "devices"):
        assert key in r.output


def test_help_imports_no_pack_and_no_torch():
    code = (
        "import sys; from sciffusion.cli.main import app; from typer.testing import CliRunner;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "assert 'toy' in r.output, r.output;"
        "mods = ('torch', 'sciffusion.domains.mri', 'sciffusion.cli.toy');"
        "print([m for m in mods if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_config_key_and_existing_outputs_are_clear_errors(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("stepz = 3\n")
    r = runner.invoke(app, ["toy", "train", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown key 'stepz'" in " ".join(r.output.split())
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    r = runner.invoke(app, ["toy", "train", "--out", str(out)])
    assert r.exit_code == 2 and "not empty; pass --force" in " ".join(r.output.split())
    assert (out / "keep.txt").read_text() == "precious"


def test_sample_without_model_and_evaluate_without_samples(tmp_path):
    r = runner.invoke(app, ["toy", "sample", "--model", str(tmp_path)])
    assert r.exit_code == 2 and "holds no trained model" in " ".join(r.output.split())
    r = runner.invoke(app, ["toy", "evaluate", "--run", str(tmp_path)])
    assert r.exit_code == 2 and "run `sciffusion toy sample` first" in " ".join(r.output.split())
