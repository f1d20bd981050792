"""Phantom simulator: seeding, scaling, k-space cropping (no inverse crime), noise, coils."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion.datasets.mri.phantoms import (
    _crop_kspace,
    add_noise,
    ellipse_phantom,
    estimate_noise_sigma,
    simulate_phantoms,
)
from sciffusion.domains.mri import fft2c, foreground_mask, ifft2c, rss
from sciffusion.domains.mri.coils import grid_coordinates


def test_seeded_and_reproducible():
    a = simulate_phantoms(3, 32, generator=torch.Generator().manual_seed(5), sigma=0.01)
    b = simulate_phantoms(3, 32, generator=torch.Generator().manual_seed(5), sigma=0.01)
    c = simulate_phantoms(3, 32, generator=torch.Generator().manual_seed(6), sigma=0.01)
    assert torch.equal(a.kspace, b.kspace) and torch.equal(a.target, b.target)
    assert not torch.equal(a.target, c.target)
    assert not torch.equal(a.target[0], a.target[1])  # samples differ within a batch


@pytest.mark.parametrize("coils", [None, 4])
def test_shapes_dtypes_and_scale(coils, gen):
    pb = simulate_phantoms(2, (24, 20), generator=gen, coils=coils, sigma=0.0)
    kshape = (2, 24, 20) if coils is None else (2, coils, 24, 20)
    assert pb.kspace.shape == kshape and pb.kspace.dtype == torch.complex64
    assert pb.image.shape == (2, 24, 20) and pb.target.dtype == torch.float32
    torch.testing.assert_close(pb.target.amax((-2, -1)), torch.ones(2))
    img = ifft2c(pb.kspace)
    ref = img.abs() if coils is None else rss(img, dim=1)
    torch.testing.assert_close(ref, pb.target, atol=1e-6, rtol=0)
    assert (pb.maps is None) == (coils is None)


def test_phantom_has_structure_and_smooth_phase(gen):
    z = ellipse_phantom(64, generator=gen)
    assert z.shape == (128, 128) and z.dtype == torch.complex128
    mag = z.abs()
    assert float(mag.min()) >= 0 and (mag > 0).float().mean() > 0.3  # a body
    assert len(torch.unique((mag * 20).round())) > 10  # many grey levels
    inside = mag > 0.2
    dphi = torch.angle(z[:, 1:] * z[:, :-1].conj())[inside[:, 1:] & inside[:, :-1]]
    assert float(dphi.abs().max()) < 0.2  # smooth phase: small pixel-to-pixel steps
    real = ellipse_phantom(64, generator=gen, phase=0.0)
    assert float(real.imag.abs().max()) == 0.0


@pytest.mark.parametrize("n", [32, 31])
def test_kspace_cropping_matches_coarse_sampling_for_band_limited_objects(n):
    """Crop-and-scale of the 2x grid's k-space reproduces the object sampled on the coarse grid
    when the object is (nearly) band-limited: the scaling (1 / factor) and centring are right."""

    def blob(factor):
        v = grid_coordinates(n, factor=factor)[:, None]
        u = grid_coordinates(n, factor=factor)[None, :]
        return torch.polar(torch.exp(-(u**2 + v**2) / (2 * 0.15**2)), 0.3 * u)

    coarse = ifft2c(_crop_kspace(fft2c(blob(2)), (n, n), 2))
    torch.testing.assert_close(coarse, blob(1), atol=1e-9, rtol=0)


def test_no_inverse_crime_by_default(gen):
    """Sharp-edged phantoms: the 2x-grid data are not the FFT of the phantom sampled on the
    reconstruction grid (that would be the inverse crime); factor=1 is exactly that."""
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    crime = simulate_phantoms(1, 32, generator=g1, factor=1)
    fine = ellipse_phantom(32, generator=g2, factor=1)
    fine = fine / fine.abs().max()
    torch.testing.assert_close(crime.image[0], fine.to(torch.complex64), atol=1e-6, rtol=0)
    honest = simulate_phantoms(1, 32, generator=torch.Generator().manual_seed(1))
    coarse_sampled = ellipse_phantom(32, generator=torch.Generator().manual_seed(1), factor=2)
    coarse_sampled = coarse_sampled[::2, ::2] / coarse_sampled[::2, ::2].abs().max()
    err = (honest.image[0] - coarse_sampled).abs().max()
    assert float(err) > 0.05  # Gibbs / partial volume: genuinely different data


@pytest.mark.parametrize("coils", [None, 8])
def test_noise_sigma_recoverable_from_background(coils, gen):
    sigma = 0.01
    pb = simulate_phantoms(4, 96, generator=gen, coils=coils, sigma=sigma)
    fg = foreground_mask(pb.target, threshold=0.02)
    grown = torch.nn.functional.max_pool2d(fg[:, None].float(), 9, stride=1, padding=4)[:, 0]
    background = grown == 0
    background[..., :4, :] = False  # keep away from the wrap-around edge rows
    est = estimate_noise_sigma(
        ifft2c(pb.kspace), background if coils is None else background[:, None]
    )
    assert abs(est / sigma - 1) < 0.05, est


def test_multicoil_rss_equals_magnitude_on_the_same_grid(gen):
    """factor=1: the coil images are exactly S_c x, so their RSS is |x| (RSS-normalised maps)."""
    pb = simulate_phantoms(2, 40, generator=gen, coils=8, factor=1)
    torch.testing.assert_close(pb.target, pb.image.abs(), atol=1e-6, rtol=0)
    coil_imgs = ifft2c(pb.kspace)
    torch.testing.assert_close(coil_imgs, pb.maps * pb.image[:, None], atol=1e-6, rtol=0)


def test_add_noise_statistics(gen):
    k = torch.zeros(200, 200, dtype=torch.complex128)
    n = add_noise(k, 0.3, generator=gen)
    assert n.dtype == k.dtype and float(k.abs().max()) == 0  # input untouched
    assert float(n.real.std()) == pytest.approx(0.3, rel=0.02)
    assert float(n.imag.std()) == pytest.approx(0.3, rel=0.02)
    assert float((n.abs() ** 2).mean()) == pytest.approx(2 * 0.09, rel=0.03)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        add_noise(k, -1.0, generator=gen)
    with pytest.raises(ValueError, match="inclusive range"):
        ellipse_phantom(16, generator=gen, n_ellipses=(5, 2))
    assert math.isfinite(float(simulate_phantoms(1, 16, generator=gen).target.sum()))
