"""MRI operators: fastMRI's FFT convention, adjointness, closed forms against generic solvers."""

from __future__ import annotations

import subprocess
import sys

import fastmri
import numpy as np
import pytest
import torch
from sciffusion.domains.mri import (
    SenseMRI,
    SinglecoilMRI,
    birdcage_maps,
    crop_readout,
    fft2c,
    gaussian_mask,
    ifft2c,
    oversample_readout,
    rss,
)
from sciffusion.inverse.operators import OPERATORS, LinearOperator

SIZES = [(8, 8), (7, 10), (9, 6), (5, 5)]


def _cplx(shape, gen, dtype=torch.complex64):
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return torch.randn((*shape, 2), generator=gen, dtype=real).contiguous().view(dtype).squeeze(-1)


def _mask(w, gen, batch=None, acc=2.0):
    def one():
        return gaussian_mask(w, acceleration=acc, center_fraction=0.2, generator=gen).mask

    return one() if batch is None else torch.stack([one() for _ in range(batch)])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_fft2c_matches_fastmri_and_numpy(size, dtype, gen):
    x = _cplx((3, *size), gen, dtype)
    ours = fft2c(x)
    ref = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)).contiguous())
    assert ours.dtype == dtype
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    xn = x.numpy()
    npref = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(xn, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    np.testing.assert_allclose(ours.numpy(), npref, atol=tol)
    torch.testing.assert_close(ifft2c(ours), x, atol=tol, rtol=0)
    # unitary: ||F x|| = ||x||; DC at (H // 2, W // 2)
    torch.testing.assert_close(ours.abs().square().sum(), x.abs().square().sum(), rtol=1e-5, atol=0)
    ones = torch.ones(size, dtype=dtype)
    dc = fft2c(ones).abs()
    assert dc[size[0] // 2, size[1] // 2] == pytest.approx((size[0] * size[1]) ** 0.5, rel=1e-5)


@pytest.mark.parametrize("size", SIZES)
def test_singlecoil_is_masked_fastmri_fft(size, gen):
    m = _mask(size[1], gen)
    op = SinglecoilMRI(m, size)
    x = _cplx((2, *size), gen)
    ref = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)).contiguous()) * m
    torch.testing.assert_close(op.A(x), ref, rtol=0, atol=0)
    assert bool((op.A(x)[..., ~m] == 0).all())


def _ops(gen, size=(7, 10), per_sample=False):
    m = _mask(size[1], gen, batch=3 if per_sample else None)
    yield SinglecoilMRI(m, size)
    maps = birdcage_maps(4, size)
    yield SenseMRI(m, maps)
    yield SenseMRI(m, maps.unsqueeze(0).expand(3, -1, -1, -1) * 1j)  # per-sample maps


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adjointness(per_sample, dtype, gen):
    for op in _ops(gen, per_sample=per_sample):
        err = op.adjointness_test(batch=3, generator=gen, dtype=dtype)
        assert err < (1e-5 if dtype == torch.float32 else 1e-12), (type(op).__name__, err)
        # SenseMRI.normal hoists the FFT shifts out of the coil loop: still exactly A^H A
        x = _cplx((3, 7, 10), gen, torch.complex64 if dtype == torch.float32 else torch.complex128)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(op.normal(x), op.A_adjoint(op.A(x)), atol=tol, rtol=0)


@pytest.mark.parametrize("name", sorted(k for k in OPERATORS if k.startswith("mri_")))
def test_registered_mri_operators(name, gen):
    op = OPERATORS[name](gen)
    assert op.adjointness_test(generator=gen) < 1e-10
    assert op.norm(generator=gen) <= 1 + 1e-6


def test_registry_holds_both_mri_operators():
    assert {"mri_singlecoil", "mri_sense"} <= set(OPERATORS)


def test_import_sciffusion_does_not_import_the_mri_pack():
    code = (
        "import sys, sciffusion, sciffusion.inverse;"
        "bad = [m for m in ('fastmri', 'sciffusion.domains.mri') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_singlecoil_pinv_prox_svd_closed_forms(gen):
    size = (7, 10)
    m = _mask(size[1], gen, batch=2)
    op = SinglecoilMRI(m, size)
    x, z = _cplx((2, *size), gen, torch.complex128), _cplx((2, *size), gen, torch.complex128)
    y = op.A(x)
    # pinv: A A^+ A = A, and equal to the generic CG minimum-norm solution
    torch.testing.assert_close(op.A(op.pinv(y)), y, atol=1e-12, rtol=0)
    generic = LinearOperator.pinv(op, y, max_iter=200, tol=1e-13)
    torch.testing.assert_close(op.pinv(y), generic, atol=1e-9, rtol=0)
    # prox: closed form vs CG on (A^H A + rho I) x = A^H y + rho z, per-sample rho
    rho = torch.tensor([0.3, 2.0], dtype=torch.float64)
    generic = LinearOperator.prox_l2(op, z, rho, y, max_iter=200, tol=1e-13)
    torch.testing.assert_close(op.prox_l2(z, rho, y), generic, atol=1e-9, rtol=0)
    # SVD: A x = U diag(s) V^H x with U = I; V unitary
    s = op.singular_values()
    assert s.shape == (2, 70)
    torch.testing.assert_close(op.A(x).reshape(2, -1), s * op.V_adjoint(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(op.V(op.V_adjoint(x)), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(op.U_adjoint(y), s * op.V_adjoint(x), atol=1e-12, rtol=0)


def test_hard_data_consistency_residual_noise_free(gen):
    """k-space replacement x <- F^-1[(1 - M) F x + y] fits y to round-off (< 1e-6)."""
    size = (32, 30)
    m = _mask(size[1], gen, acc=4.0)
    op = SinglecoilMRI(m, size)
    x_true, x_guess = _cplx((2, *size), gen), _cplx((2, *size), gen)
    y = op.A(x_true)
    x_dc = ifft2c((1 - op.broadcast_mask(x_guess)) * fft2c(x_guess) + y)
    rel = (op.A(x_dc) - y).abs().norm() / y.abs().norm()
    assert float(rel) < 1e-6
    # the prox with rho -> 0 is the same projection
    x_prox = op.prox_l2(x_guess, 1e-12, y)
    assert float((op.A(x_prox) - y).abs().norm() / y.abs().norm()) < 1e-6


def test_sense_rss_of_coil_images_is_magnitude(gen):
    size = (33, 28)
    maps = birdcage_maps(8, size)
    full = torch.ones(size[1], dtype=torch.bool)
    op = SenseMRI(full, maps)
    x = _cplx((2, *size), gen)
    coil_imgs = ifft2c(op.A(x))
    torch.testing.assert_close(rss(coil_imgs, dim=1), x.abs(), atol=1e-6, rtol=0)
    ref = fastmri.rss_complex(torch.view_as_real(coil_imgs), dim=1)
    torch.testing.assert_close(rss(coil_imgs, dim=1), ref, atol=1e-6, rtol=0)
    assert op.norm(generator=gen) == pytest.approx(1.0, abs=1e-5)


def test_sense_prox_and_pinv_match_dense_solve(gen):
    size = (5, 6)
    m = _mask(size[1], gen)
    op = SenseMRI(m, birdcage_maps(3, size, dtype=torch.complex128))
    n = size[0] * size[1]
    basis = torch.eye(n, dtype=torch.complex128).reshape(n, *size)
    a = op.A(basis).reshape(n, -1).T  # dense (3n, n)
    x, z = _cplx((1, *size), gen, torch.complex128), _cplx((1, *size), gen, torch.complex128)
    y = op.A(x)
    rho = 0.7
    lhs = a.conj().T @ a + rho * torch.eye(n, dtype=torch.complex128)
    rhs = a.conj().T @ y.reshape(-1) + rho * z.reshape(-1)
    dense = torch.linalg.solve(lhs, rhs).reshape(1, *size)
    torch.testing.assert_close(op.prox_l2(z, rho, y, tol=1e-12), dense, atol=1e-8, rtol=0)
    lstsq = (torch.linalg.pinv(a) @ y.reshape(-1)).reshape(1, *size)
    torch.testing.assert_close(op.pinv(y, tol=1e-12, max_iter=500), lstsq, atol=1e-7, rtol=0)


def test_gradient_through_operator(gen):
    """Autograd gives 2 A^H (A x - y) for ||A x - y||^2 (what DPS differentiates)."""
    size = (8, 7)
    op = SenseMRI(_mask(size[1], gen), birdcage_maps(2, size))
    x = _cplx((2, *size), gen).requires_grad_(True)
    y = op.A(_cplx((2, *size), gen))
    loss = (op.A(x) - y).abs().square().sum()
    (g,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(g, 2 * op.A_adjoint(op.A(x.detach()) - y), atol=1e-5, rtol=1e-5)


def test_readout_oversampling_round_trip(gen):
    k = fft2c(_cplx((2, 3, 9, 8), gen, torch.complex128))
    k[..., ::3] = 0  # masked columns stay exactly zero through both transforms
    over = oversample_readout(k, 18)
    assert over.shape == (2, 3, 18, 8)
    assert bool((over[..., ::3] == 0).all())
    img = ifft2c(over)
    top = (18 - 9) // 2
    torch.testing.assert_close(img[..., top : top + 9, :], ifft2c(k), atol=1e-12, rtol=0)
    assert float(img[..., :top, :].abs().max()) < 1e-12
    torch.testing.assert_close(crop_readout(over, 9), k, atol=1e-12, rtol=0)


def test_errors_are_clear(gen):
    m = _mask(10, gen)
    with pytest.raises(ValueError, match="width 10 does not match the k-space width 12"):
        SinglecoilMRI(m, (8, 12))
    with pytest.raises(ValueError, match="only 0 and 1"):
        SinglecoilMRI(torch.full((10,), 0.5), (8, 10))
    with pytest.raises(ValueError, match=r"shape \(W,\) or \(B, W\)"):
        SinglecoilMRI(m.reshape(1, 1, 10, 1), (8, 10))
    op = SenseMRI(m, birdcage_maps(4, (8, 10)))
    y_bad = torch.zeros(2, 3, 8, 10, dtype=torch.complex64)
    with pytest.raises(ValueError, match="3 coils but the maps have 4"):
        op.A_adjoint(y_bad)
    with pytest.raises(ValueError, match="3 coils but the maps have 4"):
        op.check_measurement(y_bad)
    y = torch.zeros(2, 4, 8, 10, dtype=torch.complex64)
    y[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        op.check_measurement(y)
    with pytest.raises(TypeError, match="complex"):
        op.A(torch.zeros(2, 8, 10))
    per = SinglecoilMRI(_mask(10, gen, batch=3), (8, 10))
    with pytest.raises(ValueError, match="per-sample mask for 3 samples but got a batch of 2"):
        per.A(torch.zeros(2, 8, 10, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"maps must be complex coil sensitivities"):
        SenseMRI(m, torch.ones(4, 8, 10))
