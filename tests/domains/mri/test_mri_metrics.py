"""Metrics equal fastmri.evaluate (volume max), foreground SSIM, calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri import evaluate
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri.metrics import (
    calibration,
    evaluate_volume,
    foreground_mask,
    masked_ssim,
    nmse,
    per_image_metrics,
    psnr,
    ssim,
)
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


@pytest.fixture
def volume(gen):
    """A 3-slice magnitude volume with different per-slice maxima, and a noisy estimate."""
    gt = (
        simulate_phantoms(3, 40, generator=gen).target
        * torch.tensor([1.0, 0.6, 0.3])[:, None, None]
    )
    pred = (gt + 0.03 * torch.randn(gt.shape, generator=gen)).abs()
    return gt, pred


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equal_to_fastmri_evaluate(volume, dtype):
    gt, pred = (v.numpy().astype(dtype) for v in volume)
    g64, p64 = gt.astype(np.float64), pred.astype(np.float64)
    assert nmse(gt, pred) == pytest.approx(float(evaluate.nmse(g64, p64)), abs=1e-6)
    assert psnr(gt, pred) == pytest.approx(float(evaluate.psnr(g64, p64)), abs=1e-6)
    assert ssim(gt, pred) == pytest.approx(float(evaluate.ssim(g64, p64)[0]), abs=1e-6)
    # fastMRI called on the raw dtype agrees too (float32 round-off only)
    assert ssim(gt, pred) == pytest.approx(float(evaluate.ssim(gt, pred)[0]), abs=1e-5)
    # torch tensors in, same numbers out
    assert psnr(*volume) == pytest.approx(psnr(g64, p64), abs=1e-6)
    res = evaluate_volume(*volume)
    assert set(res) == {"nmse", "psnr", "ssim"}


def test_volume_max_is_the_data_range(volume):
    """Data range = the max of the whole volume (LISTatSNU #217), not of each slice."""
    gt, pred = (v.numpy().astype(np.float64) for v in volume)
    vmax = gt.max()
    ref = peak_signal_noise_ratio(gt, pred, data_range=vmax)
    assert psnr(gt, pred) == pytest.approx(ref, abs=1e-9)
    ref_ssim = np.mean(
        [structural_similarity(g, p, data_range=vmax) for g, p in zip(gt, pred, strict=True)]
    )
    assert ssim(gt, pred) == pytest.approx(ref_ssim, abs=1e-9)
    per_slice = np.mean(
        [structural_similarity(g, p, data_range=g.max()) for g, p in zip(gt, pred, strict=True)]
    )
    assert abs(ssim(gt, pred) - per_slice) > 1e-3  # the convention matters here


def test_masked_ssim(volume):
    gt, pred = volume
    full = torch.ones_like(gt, dtype=torch.bool)
    assert masked_ssim(gt, pred, full) == pytest.approx(ssim(gt, pred), abs=1e-12)
    fg = foreground_mask(gt)
    g, p = gt.numpy().astype(np.float64), pred.numpy().astype(np.float64)
    vmax = g.max()
    ref = []
    for s in range(3):
        _, smap = structural_similarity(g[s], p[s], data_range=vmax, full=True)
        sel = fg[s].numpy()[3:-3, 3:-3]
        ref.append(smap[3:-3, 3:-3][sel].mean())
    assert masked_ssim(gt, pred, fg) == pytest.approx(float(np.mean(ref)), abs=1e-12)
    with pytest.raises(ValueError, match="empty on every slice"):
        masked_ssim(gt, pred, torch.zeros_like(full))


def test_foreground_mask_fills_dark_ellipses(gen):
    pb = simulate_phantoms(2, 64, generator=gen, sigma=0.0)
    fg = foreground_mask(pb.target)
    raw = pb.target > 0.1
    assert bool((fg >= raw).all()) and fg.float().mean() > 0.3
    assert not bool(fg[:, 0, :].any())  # corners / edges are background
    assert foreground_mask(pb.target[0]).shape == (64, 64)


def test_per_image_metrics(volume):
    gt, pred = volume
    res = per_image_metrics(gt, pred, which=("nmse", "psnr", "ssim", "fg_ssim"))
    for b in range(3):
        g, p = gt[b].numpy()[None].astype(np.float64), pred[b].numpy()[None].astype(np.float64)
        assert float(res["psnr"][b]) == pytest.approx(float(evaluate.psnr(g, p)), abs=1e-9)
        assert float(res["ssim"][b]) == pytest.approx(float(evaluate.ssim(g, p)[0]), abs=1e-9)
        assert float(res["nmse"][b]) == pytest.approx(float(evaluate.nmse(g, p)), abs=1e-9)
    with pytest.raises(ValueError, match="unknown metrics"):
        per_image_metrics(gt, pred, which=("lpips",))


def test_calibration_oracles(gen):
    n = 200_000
    std = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    err = std * torch.randn(n, generator=gen, dtype=torch.float64)
    gt = torch.zeros(n, 1, 1, dtype=torch.float64).reshape(1, 400, 500)
    est, sd = err.reshape(1, 400, 500), std.reshape(1, 400, 500)
    cal = calibration(est, sd, gt)
    assert cal.coverage == pytest.approx(0.9545, abs=0.003)  # P(|z| <= 2), Gaussian errors
    assert cal.coverage == pytest.approx(calibration(est, sd, gt, k=2.0).coverage)
    assert calibration(est, sd, gt, k=1.0).coverage == pytest.approx(0.6827, abs=0.004)
    assert cal.spearman > 0.2  # larger std, larger |error| on average
    exact = calibration(sd, sd, gt)  # |error| == std: perfectly ranked
    assert exact.spearman == pytest.approx(1.0) and exact.coverage == 1.0
    shuffled = sd.flatten()[torch.randperm(n, generator=gen)].reshape(sd.shape)
    assert abs(calibration(est, shuffled, gt).spearman) < 0.01  # std unrelated to error
    half = torch.zeros(1, 400, 500, dtype=torch.bool)
    half[..., :250] = True
    assert calibration(est, sd, gt, mask=half).coverage == pytest.approx(0.9545, abs=0.005)


def test_metric_errors(volume):
    gt, pred = volume
    with pytest.raises(TypeError, match=r"pass pred.abs\(\)"):
        psnr(gt, pred.to(torch.complex64))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(gt, pred[:, :-1])
    with pytest.raises(ValueError, match="NaN or inf"):
        nmse(gt, pred * float("nan"))
    with pytest.raises(ValueError, match="negative"):
        calibration(pred, -pred, gt)
