"""Coil maps: sigpy's birdcage formula, RSS normalisation, low-resolution estimation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sciffusion.domains.mri import SenseMRI, birdcage_maps, estimate_maps_lowres, fft2c, rss
from sciffusion.domains.mri.baselines import cg_sense
from sciffusion.domains.mri.coils import grid_coordinates
from sciffusion.domains.mri.masks import make_mask


def _sigpy_birdcage(nc, ny, nx, r=1.5):
    """sigpy.mri.sim.birdcage_maps for 2-D shapes, written out in numpy (the reference)."""
    c, y, x = np.mgrid[:nc, :ny, :nx]
    coilx = r * np.cos(c * (2 * np.pi / nc))
    coily = r * np.sin(c * (2 * np.pi / nc))
    coil_phs = -c * (2 * np.pi / nc)
    x_co = (x - nx / 2.0) / (nx / 2.0) - coilx
    y_co = (y - ny / 2.0) / (ny / 2.0) - coily
    rr = np.sqrt(x_co**2 + y_co**2)
    phi = np.arctan2(x_co, -y_co) + coil_phs
    out = (1.0 / rr) * np.exp(1j * phi)
    return out / np.sqrt((np.abs(out) ** 2).sum(0))


@pytest.mark.parametrize(("nc", "ny", "nx"), [(8, 32, 24), (4, 17, 20), (1, 9, 9), (12, 64, 64)])
def test_birdcage_matches_sigpy_formula_and_is_rss_normalised(nc, ny, nx):
    ours = birdcage_maps(nc, (ny, nx), dtype=torch.complex128)
    np.testing.assert_allclose(ours.numpy(), _sigpy_birdcage(nc, ny, nx), atol=1e-12)
    s = birdcage_maps(nc, (ny, nx))
    assert s.dtype == torch.complex64 and s.shape == (nc, ny, nx)
    torch.testing.assert_close(rss(s, dim=0), torch.ones(ny, nx), atol=1e-6, rtol=0)


@pytest.mark.parametrize("n", [16, 15])
def test_fine_grid_coincides_with_coarse_grid(n):
    """Fine pixel factor*j + offset sits where coarse pixel j does (k-space cropping geometry)."""
    fine, coarse = grid_coordinates(n, factor=2), grid_coordinates(n)
    off = (2 * n) // 2 - 2 * (n // 2)
    torch.testing.assert_close(fine[off::2][:n], coarse, atol=1e-12, rtol=0)
    maps_f = birdcage_maps(4, (n, n), factor=2, dtype=torch.complex128)
    maps_c = birdcage_maps(4, (n, n), dtype=torch.complex128)
    torch.testing.assert_close(maps_f[:, off::2, off::2][:, :n, :n], maps_c, atol=1e-12, rtol=0)


def _smooth_object(n, dtype=torch.complex128):
    v = grid_coordinates(n)[:, None]
    u = grid_coordinates(n)[None, :]
    mag = torch.exp(-(u**2 + v**2) / (2 * 0.35**2))
    return torch.polar(mag, 0.8 * u - 0.5 * v).to(dtype)


def test_lowres_estimate_recovers_maps_up_to_object_phase():
    """On a smooth object, F^-1(ACS)/RSS = S_c x / |x| inside the object: the estimate spans
    the true maps (|sum_c conj(S_est) S_true| ~ 1) and has unit RSS."""
    n = 64
    maps = birdcage_maps(8, (n, n), dtype=torch.complex128)
    x = _smooth_object(n)[None]
    k = fft2c(maps * x[:, None])
    est = estimate_maps_lowres(k, num_low_frequencies=24)
    assert est.shape == (1, 8, n, n)
    inside = x.abs()[0] > 0.3
    torch.testing.assert_close(rss(est, dim=1)[0][inside], torch.ones(int(inside.sum())).double())
    align = (est[0].conj() * maps).sum(0).abs()
    assert float(align[inside].min()) > 0.99
    mask = make_mask("random", n, acceleration=2, center_fraction=24 / n, seed=0).mask
    est_m = estimate_maps_lowres(k * mask, mask=mask)
    assert est_m.shape == est.shape
    assert float((est_m[0].conj() * maps).sum(0).abs()[inside].min()) > 0.99


def test_sense_reconstruction_with_estimated_maps():
    """Fully sampled, noise-free: CG-SENSE with estimated maps reproduces |x| in the object."""
    n = 32
    maps = birdcage_maps(6, (n, n), dtype=torch.complex128)
    x = _smooth_object(n)[None]
    full = torch.ones(n, dtype=torch.bool)
    y = SenseMRI(full, maps).A(x)
    est = estimate_maps_lowres(y, num_low_frequencies=n)  # all of k-space: maps = S x / |x|
    rec = cg_sense(SenseMRI(full, est), y, max_iter=30, tol=1e-12)
    torch.testing.assert_close(rec.abs(), x.abs(), atol=1e-8, rtol=0)


def test_coil_errors():
    with pytest.raises(ValueError, match=r"r=1.2 puts a coil wire inside"):
        birdcage_maps(4, (8, 8), r=1.2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        estimate_maps_lowres(torch.zeros(8, 8, dtype=torch.complex64), num_low_frequencies=4)
    k = torch.zeros(1, 2, 8, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match="exactly one of"):
        estimate_maps_lowres(k)
    with pytest.raises(ValueError, match="is the DC column sampled"):
        estimate_maps_lowres(k, mask=torch.zeros(8))
    with pytest.raises(ValueError, match="width 7 does not match"):
        estimate_maps_lowres(k, mask=torch.ones(7))
