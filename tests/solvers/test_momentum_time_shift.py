"""Momentum samplers (HB, GHVB, HB-DPM++2M) and the Time-Shift sampler: exact reductions to their
base solvers, GHVB's weights, and the negative control of Time-Shift on an exact denoiser."""

from __future__ import annotations

import pytest
import torch
from sciffusion.oracles import reference_ode, toy_gmm
from sciffusion.processes import VE, VPLinear
from sciffusion.solvers import (
    TimeShiftDenoiser,
    ddim,
    dpmpp_2m,
    ghvb,
    ghvb_coefficients,
    hb,
    hb_dpmpp_2m,
    make_grid,
    plms,
    sample,
    time_shift,
)


def _rmse(a, b) -> float:
    return float((a - b).pow(2).flatten(1).sum(1).mean().sqrt())


def _case(process=None, n: int = 32, dim: int = 2):
    process = process or VPLinear()
    d = toy_gmm(dim, "sharp").denoiser(process)
    x = process.prior_sample(
        (n, dim), generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    return process, d, x


def _ab(hist: list[torch.Tensor]) -> torch.Tensor:
    """Adams-Bashforth mix of PLMS with warm-up (most recent last), written out."""
    w = {1: [1.0], 2: [1.5, -0.5], 3: [23 / 12, -16 / 12, 5 / 12]}[len(hist)]
    return sum(c * e for c, e in zip(w, hist[::-1], strict=False))


def _plms_k(d, x, grid, k):
    """PLMS-k with lower-order warm-up in x~ = y / alpha, rho = sigma / alpha (the base of HB)."""
    s = d.process
    y, hist = x, []
    for i in range(len(grid) - 1):
        t, tn = grid[i], grid[i + 1]
        a, sg = float(s.alpha(t)), float(s.sigma(t))
        an, sn = float(s.alpha(tn)), float(s.sigma(tn))
        d0 = d(y, torch.full((len(y),), float(t), dtype=y.dtype))
        if sn == 0:
            y = an * d0
            continue
        hist = [*hist, (y - a * d0) / sg][-k:]
        y = (y / a + _ab(hist) * (sn / an - sg / a)) * an
    return y


@pytest.mark.parametrize("final", ["t_min", "denoise"])
def test_momentum_with_beta_one_is_the_base_solver(final):
    process, d, x = _case()
    for n in (3, 8, 20):
        grid = make_grid(process, n, final=final)
        base1 = ddim(d, x, grid)
        assert torch.allclose(hb(d, x, grid, order=1, beta=1.0), base1, rtol=0, atol=1e-12)
        assert torch.allclose(ghvb(d, x, grid, order=1, beta=1.0), base1, rtol=0, atol=1e-12)
        for k in (2, 3):
            base = _plms_k(d, x, grid, k)
            assert torch.allclose(hb(d, x, grid, order=k, beta=1.0), base, rtol=0, atol=1e-10)
            assert torch.allclose(ghvb(d, x, grid, order=k, beta=1.0), base, rtol=0, atol=1e-10)
        assert torch.allclose(
            hb_dpmpp_2m(d, x, grid, beta=1.0), dpmpp_2m(d, x, grid), rtol=0, atol=1e-12
        )


def test_plms_reference_matches_registered_plms_in_the_bulk():
    """Our PLMS-2 stand-in is a real multistep method: it converges to the same endpoint as the
    registered PLMS (which has a pseudo-Heun warm-up) as the grid refines."""
    process, d, x = _case(VE())
    grid = make_grid(process, 200, final="t_min")
    assert _rmse(_plms_k(d, x, grid, 2), plms(d, x, grid)) < 1e-3


def test_ghvb_coefficients():
    """beta = 1: Adams-Bashforth weights; any beta: they sum to 1 / beta^0 = 1 (consistency) and
    reproduce the next-step mean of a linear eps from the steady moving averages."""
    assert ghvb_coefficients(1, 1.0) == pytest.approx((1.0,))
    assert ghvb_coefficients(2, 1.0) == pytest.approx((1.5, -0.5))
    assert ghvb_coefficients(3, 1.0) == pytest.approx((23 / 12, -16 / 12, 5 / 12))
    for beta in (0.3, 0.5, 0.8):
        c = ghvb_coefficients(2, beta)
        assert sum(c) == pytest.approx(1.0)
        # moving averages of eps(m) = m over the past (m <= 0), steady state
        r = 1 - beta
        ms = torch.arange(0, 400, dtype=torch.float64)
        v = [beta * float(((r**ms) * (-(ms + j))).sum()) for j in range(2)]
        assert c[0] * v[0] + c[1] * v[1] == pytest.approx(0.5)  # int_0^1 s ds
    with pytest.raises(ValueError, match="beta"):
        ghvb_coefficients(2, 0.0)


def test_momentum_is_a_real_change_and_converges():
    """beta < 1 changes the result, and every momentum sampler still converges to the ODE
    solution (HB and HB-DPM++ first order: error halves when NFE doubles, within 25 %)."""
    process, d, x = _case(VE())
    ref = reference_ode(d, x, 1.0, process.t_min, rtol=1e-10, atol=1e-10)
    for fn in (hb, ghvb, hb_dpmpp_2m):
        errs = [_rmse(fn(d, x, make_grid(process, n, final="t_min")), ref) for n in (100, 200)]
        assert errs[1] < errs[0] and errs[1] < 0.02, (fn.__name__, errs)
    for fn in (hb, hb_dpmpp_2m):
        e1, e2 = (_rmse(fn(d, x, make_grid(process, n, final="t_min")), ref) for n in (200, 400))
        assert 1.6 < e1 / e2 < 2.5, (fn.__name__, e1, e2)
    grid = make_grid(process, 10)
    assert not torch.allclose(hb(d, x, grid), hb(d, x, grid, beta=1.0), atol=1e-6)


def test_momentum_rejects_bad_knobs():
    process, d, x = _case()
    grid = make_grid(process, 5)
    with pytest.raises(ValueError, match="beta"):
        hb(d, x, grid, beta=1.5)
    with pytest.raises(ValueError, match="order"):
        ghvb(d, x, grid, order=7)


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m", "unipc_bh2_2"])
def test_time_shift_window_zero_is_the_base_solver(solver):
    process, d, x = _case()
    grid = make_grid(process, 10)
    out = time_shift(d, x, grid, solver=solver, window=0.0)
    assert torch.equal(out, sample(solver, d, x, grid))
    # a cutoff above every grid time shifts nothing either
    out = time_shift(d, x, grid, solver=solver, window=0.5, cutoff=1.0)
    assert torch.equal(out, sample(solver, d, x, grid))


def test_time_shift_negative_control_on_the_exact_model():
    """The exact denoiser has no exposure bias: the shift cannot beat the unshifted base solver
    by more than noise (it shifts real calls: the recorded shifts are non-trivial), measured on
    the d = 16 sharp mixture against the DOP853 reference."""
    process, d, x = _case(VPLinear(), n=64, dim=16)
    ref = reference_ode(d, x, process.t_max, 0.001, rtol=1e-9, atol=1e-9)
    for n in (10, 20):
        grid = make_grid(process, n, final="t_min", t_end=0.001)
        base = _rmse(ddim(d, x, grid), ref)
        shifted_d = TimeShiftDenoiser(d, grid, window=0.5, cutoff=0.3, data_var=0.3)
        shifted = _rmse(ddim(shifted_d, x, grid), ref)
        ts = torch.cat([t_s - t0 for t0, t_s in shifted_d.shifts])
        assert ts.abs().max() > 0  # it did shift
        assert shifted > 0.98 * base, (n, shifted, base)


def test_time_shift_picks_the_variance_matched_time():
    """A sample whose entries have variance sigma(tau)^2 (VP, v_data = 0) is called at tau."""
    process = VPLinear()
    seen = []

    class Probe:
        def __init__(self):
            self.process = process

        def __call__(self, x, t, cond=None):
            seen.append(t.clone())
            return torch.zeros_like(x)

    grid = torch.tensor([0.3, 0.2, 0.1, 0.0], dtype=torch.float64)
    td = TimeShiftDenoiser(Probe(), grid, window=1.0, cutoff=0.05, candidates=201)
    tau = torch.tensor([0.25, 0.33], dtype=torch.float64)
    z = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)  # entry variance exactly 1
    td(z * process.sigma(tau)[:, None], torch.full((2,), 0.3, dtype=torch.float64))
    assert torch.allclose(seen[-1], tau, rtol=0, atol=1e-3)  # candidates every 1e-3
    td(z, torch.full((2,), 0.15, dtype=torch.float64))  # not a grid time: unchanged
    assert torch.equal(seen[-1], torch.full((2,), 0.15, dtype=torch.float64))
    td(z, torch.full((2,), 0.1, dtype=torch.float64))  # below the cutoff? no: 0.1 > 0.05
    assert float(seen[-1].min()) >= 0.0 and float(seen[-1].max()) <= 0.2
