"""Baselines: TV-ADMM is converged and optimal, CG-SENSE solves its normal equations, and the
phantom numbers sit where the benchmark measured them (regression guards with margins)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri import (
    SenseMRI,
    SinglecoilMRI,
    birdcage_maps,
    fft2c,
    make_mask,
    per_image_metrics,
)
from sciffusion.domains.mri.baselines import (
    _grad_symbol,
    cg_sense,
    grad,
    grad_adjoint,
    oracle_lambda,
    rss_zero_filled,
    tv_admm,
    tv_objective,
    zero_filled,
)
from sciffusion.inverse.operators import inner

LAMS = tuple(float(v) for v in np.geomspace(3e-4, 3e-2, 9))


def _cplx(shape, gen):
    return torch.view_as_complex(torch.randn((*shape, 2), generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("size", [(8, 8), (7, 10)])
def test_gradient_adjoint_and_fourier_symbol(size, gen):
    x, z = _cplx((2, *size), gen), _cplx((2, 2, *size), gen)
    torch.testing.assert_close(inner(grad(x), z), inner(x, grad_adjoint(z)), atol=1e-10, rtol=0)
    sym = _grad_symbol(*size, dtype=torch.float64, device=None)
    torch.testing.assert_close(fft2c(grad_adjoint(grad(x))), sym * fft2c(x), atol=1e-10, rtol=0)


def _problem(gen, n=32, coils=None, acc=4, cf=0.08, batch=2, sigma=0.01):
    pb = simulate_phantoms(
        batch, n, generator=gen, coils=coils, sigma=sigma, dtype=torch.complex128
    )
    m = make_mask("random", n, acceleration=acc, center_fraction=cf, batch=batch, generator=gen)
    op = SinglecoilMRI(m.mask, (n, n)) if coils is None else SenseMRI(m.mask, pb.maps)
    return pb, op, op.broadcast_mask(pb.kspace) * pb.kspace


def test_tv_admm_is_converged_and_optimal(gen):
    _, op, y = _problem(gen, n=24)
    lam = 3e-3
    x = tv_admm(op, y, lam=lam)
    x_long = tv_admm(op, y, lam=lam, n_iter=600)
    f, f_long = tv_objective(op, x, y, lam), tv_objective(op, x_long, y, lam)
    assert float(((f - f_long) / f_long).abs().max()) < 2e-3
    # convexity: random perturbations never decrease the objective at the long-run solution
    for scale in (1e-2, 1e-3):
        for _ in range(5):
            d = scale * _cplx(tuple(x.shape), gen)
            assert bool((tv_objective(op, x_long + d, y, lam) >= f_long - 1e-12).all())
    # the exact FFT x-update and the generic CG x-update solve the same problem
    one_coil = SenseMRI(op.mask, torch.ones(1, 24, 24, dtype=torch.complex128))
    x_cg = tv_admm(one_coil, y[:, None], lam=lam, n_iter=150, cg_iter=5)
    f_cg = tv_objective(one_coil, x_cg, y[:, None], lam)
    assert float(((f_cg - f_long) / f_long).abs().max()) < 2e-3


def test_tv_admm_per_sample_lambda(gen):
    _, op, y = _problem(gen, n=24)
    lams = torch.tensor([1e-3, 1e-2], dtype=torch.float64)
    both = tv_admm(op, y, lam=lams)
    for b in range(2):
        single = SinglecoilMRI(op.mask[b], (24, 24))
        xb = tv_admm(single, y[b : b + 1], lam=float(lams[b]))
        torch.testing.assert_close(both[b : b + 1], xb, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="lam must be > 0"):
        tv_admm(op, y, lam=0.0)
    with pytest.raises(ValueError, match=r"a \(B,\) tensor with B=2"):
        tv_admm(op, y, lam=torch.ones(3))


def test_cg_sense_solves_normal_equations(gen):
    n = 16
    pb, op, y = _problem(gen, n=n, coils=4, sigma=0.0, batch=1)
    full = SenseMRI(torch.ones(n, dtype=torch.bool), pb.maps)
    rec = cg_sense(full, full.A(pb.image), max_iter=50, tol=1e-12)
    torch.testing.assert_close(rec, pb.image, atol=1e-9, rtol=0)
    mu = 0.05
    x = cg_sense(op, y, mu=mu, max_iter=200, tol=1e-13)
    residual = op.normal(x) + mu * x - op.A_adjoint(y)
    assert float(residual.abs().max()) < 1e-9
    with pytest.raises(ValueError, match="mu must be >= 0"):
        cg_sense(op, y, mu=-1.0)
    rss_img = rss_zero_filled(y)
    assert rss_img.shape == (1, n, n) and not rss_img.is_complex()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        rss_zero_filled(y[:, 0])


def test_oracle_lambda_picks_the_grid_maximum(gen):
    pb, op, y = _problem(gen, n=32, batch=2)
    search = oracle_lambda(lambda lam: tv_admm(op, y, lam=lam, n_iter=50), LAMS[::2], pb.target)
    assert search.best in search.lams
    assert search.scores[search.lams.index(search.best)] == max(search.scores)
    with pytest.raises(ValueError, match="lams is empty"):
        oracle_lambda(lambda lam: y, [], pb.target)


def _psnr_ssim(target, rec):
    m = per_image_metrics(target, rec.abs(), which=("psnr", "ssim"))
    return float(m["psnr"].mean()), float(m["ssim"].mean())


@pytest.mark.parametrize(
    ("acc", "cf", "lam", "zf_range", "tv_min", "gain"),
    [(4, 0.08, 3e-3, (17.0, 22.0), 21.0, 2.0), (8, 0.04, 1.7e-3, (15.0, 19.0), 16.5, 0.4)],
)
def test_single_coil_64_regression(acc, cf, lam, zf_range, tv_min, gain):
    """64^2, sigma = 0.01, 4 phantoms, lam from the benchmark's validation search
    (benchmark means on 8 held-out phantoms: ZF 19.1 / 16.8 dB, TV 22.4 / 17.7 dB at 4x / 8x)."""
    pb, op, y = _problem(torch.Generator().manual_seed(11), n=64, acc=acc, cf=cf, batch=4)
    zf = _psnr_ssim(pb.target, zero_filled(op, y))
    tv = _psnr_ssim(pb.target, tv_admm(op, y, lam=lam))
    assert zf_range[0] < zf[0] < zf_range[1], zf
    assert tv[0] > tv_min and tv[0] > zf[0] + gain, (zf, tv)
    assert tv[1] > zf[1] + 0.05, (zf, tv)


def test_tv_solve_128_single_coil_under_one_second(gen):
    pb, op, y = _problem(gen, n=128, batch=1)
    pb = simulate_phantoms(1, 128, generator=gen, sigma=0.01)
    y = op.broadcast_mask(pb.kspace) * pb.kspace
    op32 = SinglecoilMRI(op.mask, (128, 128))
    tv_admm(op32, y, lam=3e-3, n_iter=5)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        tv_admm(op32, y, lam=3e-3)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[1] < 1.0, times


@pytest.mark.slow
def test_single_coil_128_oracle_lambda_held_out():
    """Budget ~30 s on 2 cores. 128^2, sigma = 0.01: lam from 2 validation phantoms, scored on 4
    held-out ones. Measured (benchmark, 8 held-out): ZF 21.5 / 17.9 dB, TV 29.0 / 20.7 dB
    (SSIM 0.855 / 0.603) at 4x / 8x. Note 03's 33.1 / 21.8 dB used phantoms without our 2x-grid
    simulation, so the gap at 4x is expected (see the report)."""
    out = {}
    for acc, cf in ((4, 0.08), (8, 0.04)):
        vpb, vop, vy = _problem(torch.Generator().manual_seed(1), n=128, acc=acc, cf=cf)
        search = oracle_lambda(
            lambda lam, vop=vop, vy=vy: tv_admm(vop, vy, lam=lam), LAMS[1:-2], vpb.target
        )
        lam = search.best
        pb, op, y = _problem(torch.Generator().manual_seed(2), n=128, acc=acc, cf=cf, batch=4)
        out[acc] = (
            _psnr_ssim(pb.target, zero_filled(op, y)),
            _psnr_ssim(pb.target, tv_admm(op, y, lam=lam)),
        )
    (zf4, tv4), (zf8, tv8) = out[4], out[8]
    assert 19.5 < zf4[0] < 23.5 and 16.0 < zf8[0] < 20.0, out
    assert tv4[0] > 27.5 and tv4[1] > 0.8, out
    assert tv8[0] > 19.5 and tv8[0] > zf8[0] + 1.5, out


def test_eight_coil_tv_sense_64():
    """8 birdcage coils, 64^2, 4x, sigma = 0.01, 2 phantoms:
    TV-SENSE > CG-SENSE > RSS zero-filled (benchmark: 29.4 / 23.5 / 19.5 dB)."""
    pb, op, y = _problem(torch.Generator().manual_seed(3), n=64, coils=8, batch=2)
    zf = per_image_metrics(pb.target, rss_zero_filled(y), which=("psnr",))["psnr"].mean()
    cgs = _psnr_ssim(pb.target, cg_sense(op, y, max_iter=10))
    tv = _psnr_ssim(pb.target, tv_admm(op, y, lam=1e-3))
    assert tv[0] > cgs[0] + 3 and cgs[0] > float(zf) + 1.5, (float(zf), cgs, tv)
    assert tv[0] > 27.0 and tv[1] > 0.8
    assert float(birdcage_maps(8, (64, 64)).abs().square().sum(0).mean()) == pytest.approx(1.0)
