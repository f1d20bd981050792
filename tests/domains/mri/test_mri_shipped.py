"""The shipped priors (``domains/mri/checkpoints``), the bundled phantom file and the demo.

These read the real checkpoints: a missing or broken checkpoint fails here."""

from __future__ import annotations

import json

import pytest
import torch
from sciffusion.datasets.mri.fastmri_io import file_checksum, inspect_fastmri_file
from sciffusion.domains.mri import per_image_metrics
from sciffusion.domains.mri.benchmark import _setting
from sciffusion.domains.mri.demo import DEMO_FILE, mri_demo
from sciffusion.domains.mri.prior import PRIOR_KINDS, checkpoint_dir, load_prior
from sciffusion.domains.mri.recon import reconstruct


@pytest.mark.parametrize("kind", PRIOR_KINDS)
def test_shipped_prior_loads(kind):
    folder = checkpoint_dir(kind)
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 10 * 2**20  # a few MB
    p = load_prior(kind)
    assert p.kind == kind and p.size == 64
    assert p.info["seconds_train"] < 30 * 60  # trained in under 30 minutes on one CPU thread
    with torch.no_grad():
        x = torch.randn(1, 2, 64, 64)
        t = torch.full((1,), 0.5, dtype=torch.float64)
        cond = None if kind == "uncond" else torch.randn(1, 2, 64, 64)
        assert torch.isfinite(p.denoiser(x, t, cond)).all()


def test_bundled_file():
    info = inspect_fastmri_file(DEMO_FILE)
    assert info.challenge == "singlecoil" and info.n_slices == 4
    assert info.kspace_shape == (128, 64) and info.target_shape == (64, 64)


@pytest.mark.slow
def test_cond_prior_beats_tv_at_8x():
    """Regression guard on two held-out phantoms (the benchmark measures it properly).

    Budget: about 5 s on 2 idle cores (12 s measured while the machine was busy)."""
    pb, _, _, masks = _setting(64, None, 8, 0.04, 2, 0.01, 4242)
    kw = dict(sigma=0.01, generator=torch.Generator().manual_seed(0))
    tv = reconstruct(pb.kspace, masks, method="tv", options={"lam": 3e-3}, **kw)
    cond = reconstruct(pb.kspace, masks, method="cond", prior="cond", n_samples=2, **kw)
    p_tv = per_image_metrics(pb.target, tv.mean.abs())["psnr"].mean()
    p_cond = per_image_metrics(pb.target, cond.mean.abs())["psnr"].mean()
    assert p_cond > p_tv + 1.0, (p_cond, p_tv)


@pytest.mark.slow
def test_demo_fast(tmp_path):
    """``sciffusion demo``'s MRI part in fast mode. Budget: about 4 s idle (8 s busy)."""
    from rich.console import Console

    before = file_checksum(DEMO_FILE)
    out = mri_demo(tmp_path, seed=0, device="cpu", fast=True, console=Console(quiet=True))
    assert file_checksum(DEMO_FILE) == before
    assert out["psnr_cond"] > out["psnr_zero_filled"]
    assert (tmp_path / "figures" / "phantom_demo.png").is_file()
    assert (tmp_path / "config.toml").is_file()
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert set(m["phantom_demo.h5"]) == {"cond", "tv", "zero_filled"}
