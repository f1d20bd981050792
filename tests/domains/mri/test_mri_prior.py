"""MRI priors (``domains/mri/prior.py``, ``net.py``): training pairs, the net, a few training
steps of a tiny net, save/load round trip. Never trains the shipped priors."""

from __future__ import annotations

import json

import pytest
import torch
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri.channels import channels_to_image
from sciffusion.domains.mri.masks import center_block
from sciffusion.domains.mri.net import SpaceToDepthUNet
from sciffusion.domains.mri.prior import (
    PairDataset,
    PriorRecipe,
    checkpoint_dir,
    load_prior,
    train_prior,
)


@pytest.fixture(scope="module")
def images():
    return simulate_phantoms(4, 16, generator=torch.Generator().manual_seed(0)).image


@pytest.mark.parametrize("prior", ["uncond", "cond", "irsde"])
def test_pairs(prior, images):
    d = PairDataset(images, prior=prior, sigma=0.01, seed=1)
    item = d.pair(0, torch.Generator().manual_seed(0))
    assert item["x0"].shape == (2, 16, 16)
    key = {"uncond": None, "cond": "cond", "irsde": "mu"}[prior]
    assert set(item) == {"x0"} | ({key} if key else set())
    if key:
        # the condition is the zero-filled image at the same scale: its calibration block has
        # unit RMS by Parseval (Eq. (1) of scaling.py)
        zf = channels_to_image(item[key][None])
        k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(zf), norm="ortho"))
        sampled = k.abs().sum(-2)[0] > 0
        start, n = center_block(sampled)
        blk = k[..., start : start + n]
        assert float(blk.abs().square().sum().sqrt() / 16) == pytest.approx(1.0, rel=1e-4)
    # fresh draws per visit, reproducible per (seed, index, visit)
    a, b = d[1], d[1]
    assert not torch.equal(a["x0"], b["x0"]) or prior == "uncond"
    d2 = PairDataset(images, prior=prior, sigma=0.01, seed=1)
    assert torch.equal(d2[1]["x0"], a["x0"])


def test_pair_draws_follow_the_epoch_so_resume_is_exact(images):
    """Through make_loader the k-th draw of an item is its epoch's: a loader resumed after 3
    batches (2 per epoch) yields what epoch 1 of an uninterrupted loader yields after its first
    batch, masks and noise included."""
    from sciffusion.training import make_loader

    loader = make_loader(PairDataset(images, prior="cond", sigma=0.01, seed=1), batch_size=2)
    epoch0, epoch1 = list(loader), list(loader)
    assert not torch.equal(epoch0[0]["cond"], epoch1[0]["cond"])  # new draws each epoch
    fresh = make_loader(PairDataset(images, prior="cond", sigma=0.01, seed=1), batch_size=2)
    fresh.sampler.resume(batches_done=3, batch_size=2)
    rest = list(fresh)
    assert len(rest) == 1
    for key in ("x0", "cond"):
        assert torch.equal(rest[0][key], epoch1[1][key])


def test_pair_dataset_rejects_bad_images(images):
    with pytest.raises(ValueError, match="complex"):
        PairDataset(images.abs(), prior="cond", sigma=0.01)
    with pytest.raises(ValueError, match="unknown prior"):
        PairDataset(images, prior="ddpm", sigma=0.01)


def test_space_to_depth_net_shapes_and_odd_sizes():
    net = SpaceToDepthUNet(2, cond_channels=2, base=8, mults=(1, 2), groups=4)
    for h, w in [(16, 16), (15, 17)]:
        x = torch.randn(2, 2, h, w)
        out = net(x, torch.rand(2), torch.randn(2, 2, h, w))
        assert out.shape == x.shape
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(2, 3, 16, 16), torch.rand(2))


def test_train_tiny_and_reload(tmp_path):
    """A few steps of a tiny net (fast recipe at 16x16): files written, reloaded, same output."""
    recipe = PriorRecipe(prior="cond", size=16, n_train=8, steps=3, batch_size=4, fast=True)
    model = train_prior(recipe, tmp_path / "run", progress=False)
    info = json.loads((model / "mri.json").read_text())
    assert info["prior"] == "cond" and info["recipe"]["steps"] == 3 and info["size"] == 16
    assert info["seconds_per_step"] > 0
    assert (model / "model.safetensors").is_file()
    p = load_prior(tmp_path / "run")
    assert p.kind == "cond" and p.size == 16
    x = torch.randn(1, 2, 16, 16)
    t = torch.full((1,), 0.5, dtype=torch.float64)
    zf = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        a = p.denoiser(x, t, zf)
        b = load_prior(model).denoiser(x, t, zf)
    assert torch.allclose(a, b)


def test_load_prior_errors(tmp_path):
    with pytest.raises(ValueError, match="no shipped prior"):
        checkpoint_dir("ddpm")
    with pytest.raises((FileNotFoundError, ValueError)):
        load_prior(tmp_path / "nothing")
