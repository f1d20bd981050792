"""Operator contract (DESIGN 5): one parametrised test over the registry, plus closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sciffusion.inverse import (
    OPERATORS,
    Blur,
    ChannelsToComplex,
    Downsample,
    FFTMask,
    Identity,
    LinearOperator,
    Mask,
    Matrix,
    Nonlinear,
    RealToComplex,
    Stacked,
    compose,
    fft_c,
    gaussian_kernel,
    ifft_c,
    inner,
)
from sciffusion.inverse.operators import _randn

NAMES = sorted(OPERATORS)
LINEAR = [n for n in NAMES if OPERATORS[n](torch.Generator().manual_seed(0)).linear]


def _make(name: str, gen: torch.Generator):
    return OPERATORS[name](gen)


def _rand_in(op, gen, batch=None, dtype=torch.float64):
    b = batch or getattr(op, "batch_size", None) or 2
    return _randn((b, *op.in_shape), op.in_complex, dtype, gen, None)


def _rand_out(op, gen, batch, dtype=torch.float64):
    return _randn((batch, *op.out_shape), op.out_complex, dtype, gen, None)


def _rel(a, b):
    num = inner(a - b, a - b).sqrt()
    den = inner(b, b).sqrt().clamp(min=1e-30)
    return float((num / den).max())


def test_registry_is_populated():
    expected = {"identity", "mask", "mask_per_sample", "fft_mask", "blur", "downsample", "matrix"}
    assert expected <= set(OPERATORS)
    assert {"composed_fft_real", "stacked", "real_to_complex", "nonlinear"} <= set(OPERATORS)


@pytest.mark.parametrize("name", LINEAR)
def test_adjointness(name, gen):
    op = _make(name, gen)
    assert op.adjointness_test(generator=gen, dtype=torch.float64) < 1e-5


@pytest.mark.parametrize("name", LINEAR)
def test_pinv_identities(name, gen):
    op = _make(name, gen)
    x = _rand_in(op, gen)
    Ax = op.A(x)
    assert _rel(op.A(op.pinv(Ax)), Ax) < 1e-6  # A A^+ A = A
    # least squares: the residual of A^+ y is orthogonal to the range of A
    y = _rand_out(op, gen, x.shape[0])
    r = op.A(op.pinv(y)) - y
    g = op.A_adjoint(r)
    assert float(inner(g, g).sqrt().max()) < 1e-6 * float(inner(y, y).sqrt().max())


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("per_sample_rho", [False, True])
def test_prox_optimality(name, per_sample_rho, gen):
    op = _make(name, gen)
    z = _rand_in(op, gen)
    y = _rand_out(op, gen, z.shape[0])
    rho = torch.tensor([0.3, 2.0], dtype=torch.float64)[: z.shape[0]] if per_sample_rho else 0.7
    if per_sample_rho and z.shape[0] != 2:
        pytest.skip("per-sample rho example needs batch 2")
    x = op.prox_l2(z, rho, y)
    r = rho.reshape(-1, *[1] * (z.ndim - 1)) if isinstance(rho, torch.Tensor) else rho
    stationarity = op.A_adjoint(op.A(x) - y) + r * (x - z)
    scale = inner(op.A_adjoint(y), op.A_adjoint(y)).sqrt() + inner(z, z).sqrt()
    assert float((inner(stationarity, stationarity).sqrt() / scale).max()) < 1e-6


@pytest.mark.parametrize(
    "name",
    [n for n in LINEAR if n in OPERATORS and _make(n, torch.Generator().manual_seed(0)).has_svd],
)
def test_svd_consistency(name, gen):
    op = _make(name, gen)
    x = _rand_in(op, gen)
    s = op.singular_values().to(torch.float64)
    c = op.V_adjoint(x)
    assert c.shape == (x.shape[0], s.shape[-1])
    assert _rel(op.V(c), x) < 1e-10  # V unitary: V V^H = I on the input space
    assert torch.allclose(inner(c, c), inner(x, x), rtol=1e-10)
    assert _rel(op.U_adjoint(op.A(x)), s * c) < 1e-10  # U^H A = diag(s) V^H
    y = _rand_out(op, gen, x.shape[0])
    keep = s > 1e-10 * s.max()
    s_inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    assert _rel(op.pinv(y), op.V(op.U_adjoint(y) * s_inv)) < 1e-8


@pytest.mark.parametrize("name", LINEAR)
def test_norm(name, gen):
    op = _make(name, gen)
    est = op.norm(generator=gen, n_iter=300)
    if op.batch_size is None:
        exact = float(torch.linalg.matrix_norm(op.dense(), 2))
    else:
        exact = float(op.singular_values().abs().max())
    assert exact * (1 - 2e-3) <= est <= exact * (1 + 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_float32_round_trip(name, gen):
    op = _make(name, gen)
    x = _rand_in(op, gen, dtype=torch.float32)
    y = op.A(x)
    assert y.shape == (x.shape[0], *op.out_shape)
    assert y.is_complex() == op.out_complex
    assert (y.real.dtype if y.is_complex() else y.dtype) == torch.float32
    if op.linear:
        back = op.A_adjoint(y)
        assert back.shape == x.shape and back.dtype == x.dtype


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences(name, gen):
    op = _make(name, gen)
    x = _rand_in(op, gen)
    y = _rand_out(op, gen, x.shape[0])
    g = op.grad(x, y)
    d = _rand_in(op, gen)

    def f(v):
        r = op.A(v) - y
        return 0.5 * inner(r, r)

    h = 1e-6
    fd = (f(x + h * d) - f(x - h * d)) / (2 * h)
    assert torch.allclose(inner(g, d), fd, rtol=1e-6, atol=1e-8)
    v = _rand_out(op, gen, x.shape[0])
    with torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(inner(op.A(xx), v).sum(), xx)
    assert _rel(op.vjp(x, v), ref) < 1e-10


# -- closed forms against independent references ---------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 7), (8, 8), (5, 4)])
def test_fft_c_matches_fastmri(shape, gen):
    fastmri = pytest.importorskip("fastmri")
    z = torch.randn(2, *shape, 2, generator=gen, dtype=torch.float64)
    ref = fastmri.fft2c(z)
    ours = torch.view_as_real(fft_c(torch.view_as_complex(z)))
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.allclose(
        torch.view_as_real(ifft_c(torch.view_as_complex(z))), fastmri.ifft2c(z), atol=1e-12
    )


def test_fft_mask_hard_projection_is_kspace_replacement(gen):
    mask = torch.rand(8, generator=gen) > 0.5
    op = FFTMask(mask, in_shape=(6, 8))
    x = torch.view_as_complex(torch.randn(3, 6, 8, 2, generator=gen, dtype=torch.float64))
    truth = torch.view_as_complex(torch.randn(3, 6, 8, 2, generator=gen, dtype=torch.float64))
    y = op.A(truth)
    ddnm = op.pinv(y) + x - op.pinv(op.A(x))  # A^+ y + (I - A^+ A) x
    m = mask.to(torch.float64)
    replaced = ifft_c((1 - m) * fft_c(x) + m * fft_c(truth))
    assert torch.allclose(ddnm, replaced, atol=1e-12)


def test_blur_matches_wrapped_convolution(gen):
    ndimage = pytest.importorskip("scipy.ndimage")
    k = torch.rand(3, 5, generator=gen, dtype=torch.float64)
    op = Blur(k, (7, 9))
    x = torch.randn(1, 7, 9, generator=gen, dtype=torch.float64)
    ref = ndimage.convolve(x[0].numpy(), k.numpy(), mode="wrap")
    np.testing.assert_allclose(op.A(x)[0].numpy(), ref, atol=1e-12)


def test_downsample_is_average_pooling(gen):
    op = Downsample((3, 8, 6), 2)
    x = torch.randn(2, 3, 8, 6, generator=gen, dtype=torch.float64)
    ref = torch.nn.functional.avg_pool2d(x, 2)
    assert torch.allclose(op.A(x), ref, atol=1e-14)


def test_matrix_pinv_is_numpy_pinv(gen):
    M = torch.randn(4, 7, generator=gen, dtype=torch.float64)
    op = Matrix(M)
    y = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    assert torch.allclose(op.pinv(y), y @ torch.linalg.pinv(M).mT, atol=1e-10)


def test_default_cg_pinv_and_prox_on_composition(gen):
    # a composition has no closed form: the base class's CG must agree with dense algebra
    op = Downsample((4, 4), 2) @ Mask(torch.rand(4, 4, generator=gen) > 0.3)
    M = op.dense()
    y = torch.randn(2, 2, 2, generator=gen, dtype=torch.float64)
    ref = y.reshape(2, -1) @ torch.linalg.pinv(M).mT
    assert torch.allclose(op.pinv(y, tol=1e-12).reshape(2, -1), ref, atol=1e-8)


def test_mask_pinv_and_prox_closed_forms(gen):
    m = torch.tensor([[1.0, 0.0], [0.5, 2.0]], dtype=torch.float64)
    op = Mask(m)
    y = torch.randn(1, 2, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(1, 2, 2, generator=gen, dtype=torch.float64)
    expected = torch.where(m > 0, y / m.clamp(min=1e-30), torch.zeros_like(y))
    assert torch.allclose(op.pinv(y), expected)
    assert torch.allclose(op.prox_l2(z, 0.5, y), (m * y + 0.5 * z) / (m**2 + 0.5))


# -- errors users see ------------------------------------------------------------------------------
def test_shape_and_kind_errors(gen):
    op = FFTMask(torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"expects \(B, 4, 4\)"):
        op.check_input(torch.zeros(2, 4, 5, dtype=torch.complex64))
    with pytest.raises(TypeError, match="complex data"):
        op.check_input(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="real data"):
        Mask(torch.ones(3)).check_measurement(torch.zeros(1, 3, dtype=torch.complex64))
    y = torch.zeros(1, 4, 4, dtype=torch.complex64)
    y[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        op.check_measurement(y)
    ps = Mask(torch.ones(3, 5), per_sample=True)
    with pytest.raises(ValueError, match="3 per-sample masks for a batch of 2"):
        ps.A(torch.zeros(2, 5))


def test_construction_errors():
    with pytest.raises(ValueError, match="non-negative"):
        Mask(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        FFTMask(torch.ones(5), in_shape=(4, 4))
    with pytest.raises(ValueError, match="divisible"):
        Downsample((5, 4), 2)
    with pytest.raises(ValueError, match="larger than the image"):
        Blur(gaussian_kernel(5, 1.0), (3, 3))
    with pytest.raises(ValueError, match="cannot compose"):
        compose(Mask(torch.ones(3)), Identity((4,)))
    with pytest.raises(ValueError, match="cannot compose"):
        compose(FFTMask(torch.ones(3, 3)), Identity((3, 3)))  # complex after real
    with pytest.raises(TypeError, match="all real or all complex"):
        Stacked(Identity((2,)), RealToComplex((2,)))
    with pytest.raises(ValueError, match=r"\(2C, \*S\)"):
        ChannelsToComplex((3, 4))


def test_composition_kinds(gen):
    lin = Mask(torch.ones(3)) @ Identity((3,))
    assert isinstance(lin, LinearOperator)
    nl = Nonlinear(torch.sin, (3,), (3,))
    assert not compose(Mask(torch.ones(3)), nl).linear


def test_cg_on_a_singular_float32_system_does_not_diverge(gen):
    """Mask o FFT is singular; asking CG for 1e-10 in float32 used to iterate on round-off and
    blow up to ~1e9 (found through ADS's final projection). Now it stops at float32 precision."""
    from sciffusion.inverse import FFTMask, Mask, RealToComplex, compose

    full = compose(FFTMask(torch.ones(32, 32, dtype=torch.bool)), RealToComplex((32, 32)))
    mask = torch.zeros(6, 32, 32, dtype=torch.bool)
    mask[..., ::4] = True
    mask[..., 14:18] = True
    op = compose(Mask(mask, per_sample=True, complex=True), full)
    x = torch.randn(6, 32, 32, generator=gen)
    y = full.A(torch.randn(6, 32, 32, generator=gen))
    d = op.pinv(mask * (y - full.A(x)), tol=1e-10)
    assert torch.isfinite(d).all() and float(d.abs().max()) < 100
    assert float((op.A(x + d) - mask * y).abs().max()) < 1e-4
