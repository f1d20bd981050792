"""Packaging: one namespace, no generic top-level modules, a cheap `import sciffusion`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "toolkit": "sciffusion",
    "solvers": "sciffusion.solvers",
    "domains": "sciffusion.domains",
    "datasets": "sciffusion.datasets",
}


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True
    )
    return out.stdout.strip()


def test_every_source_package_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    data_globs = setuptools["package-data"]["*"]  # e.g. "*.safetensors"
    found = set()
    for folder, pkg in FOLDERS.items():
        marks = [*(ROOT / folder).rglob("__init__.py")]  # code packages
        marks += [f for glob in data_globs for f in (ROOT / folder).rglob(glob)]  # data folders
        for mark in marks:
            rel = mark.parent.relative_to(ROOT / folder).parts
            found.add(".".join([pkg, *rel]))
    assert found == listed, f"unlisted: {found - listed}; stale: {listed - found}"


def test_no_generic_top_level_modules_installed():
    code = (
        "import importlib.util as u; "
        "print([m for m in ('datasets', 'solvers', 'toolkit', 'domains') if u.find_spec(m)])"
    )
    assert _run(code) == "[]"


def test_import_is_light_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import sciffusion;"
        "dt = time.perf_counter() - t;"
        "heavy = ['torch', 'rdkit', 'ase', 'xarray', 'h5py', 'fastmri', 'torchaudio',"
        " 'pytorch_lightning', 'lightning', 'scipy', 'matplotlib'];"
        "print(dt, [m for m in heavy if m in sys.modules])"
    )
    dt, loaded = _run(code).split(" ", 1)
    assert loaded == "[]"
    assert float(dt) < 1.0


def test_solvers_import_does_not_pull_optional_packs():
    code = (
        "import sys, sciffusion.solvers, sciffusion.inverse, sciffusion.oracles;"
        "print([m for m in ('rdkit', 'ase', 'xarray', 'h5py', 'fastmri', 'torchaudio',"
        " 'pytorch_lightning', 'sciffusion.domains.mri') if m in sys.modules])"
    )
    assert _run(code) == "[]"


def test_every_exported_name_resolves():
    import sciffusion

    missing = [n for n in sciffusion.__all__ if getattr(sciffusion, n, None) is None]
    assert missing == []
