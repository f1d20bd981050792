"""DPM-Solver-v3 and its empirical model statistics (EMS): reductions, an exact oracle, files."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion.oracles import GaussianOracle, reference_ode, toy_gmm
from sciffusion.processes import VE, VPLinear
from sciffusion.solvers import (
    ModelStatistics,
    ddim,
    dpm_solver_v3,
    dpmpp_multistep,
    estimate_statistics,
    make_grid,
)
from sciffusion.solvers.ems import degenerate


def _rmse(a, b) -> float:
    return float((a - b).pow(2).flatten(1).sum(1).mean().sqrt())


def _gmm_case(n: int = 32):
    process = VPLinear()
    d = toy_gmm(2, "sharp").denoiser(process)
    x = process.prior_sample(
        (n, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    return process, d, x


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("final", ["t_min", "denoise"])
def test_degenerate_statistics_are_dpmpp(order, final):
    """l = 1, s = b = 0 and no corrector: DPM-Solver++ multistep with Lagrange-exact steps (to
    round-off), at every order; the order-1 solver is DDIM."""
    process, d, x = _gmm_case()
    for n in (5, 12, 20):
        grid = make_grid(process, n, final=final)
        v3 = dpm_solver_v3(d, x, grid, order=order, corrector=False, statistics=degenerate(1))
        ref = dpmpp_multistep(d, x, grid, order=order, variant="exact")
        assert torch.allclose(v3, ref, rtol=0, atol=1e-12), (order, n, (v3 - ref).abs().max())
        if order == 1:
            assert torch.allclose(v3, ddim(d, x, grid), rtol=0, atol=1e-12)


def test_degenerate_default_and_corrector_changes_the_result():
    """``statistics=None`` is the degenerate set; the corrector is a real change (same NFE)."""
    process, d, x = _gmm_case()
    grid = make_grid(process, 8)
    a = dpm_solver_v3(d, x, grid)
    b = dpm_solver_v3(d, x, grid, statistics=degenerate(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, dpm_solver_v3(d, x, grid, corrector=False), atol=1e-6)


def _diag_gaussian():
    var = torch.tensor([0.04, 0.5, 2.0], dtype=torch.float64)
    mean = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    return GaussianOracle(mean, torch.diag(var)), mean, var


@pytest.mark.slow
def test_ems_of_a_diagonal_gaussian_are_closed_form():
    """Budget 10 s (the first forward-mode JVP of a session imports torch's decompositions, ~3 s).

    Diagonal Gaussian data N(m, diag(v)), VE frame u = y / alpha, rho^2 = e^{-2 lam}:
        dD/du = v / (v + rho^2) exactly, so l = rho^2 / (v + rho^2) (Eq. 9 of Zheng et al. 2023);
        then f = (1 - l) u - D = -m rho^2 / (v + rho^2) is the same for every sample, so s = 0 and
        b = df/dlam = 2 m v rho^2 / (v + rho^2)^2 (Eq. 10 has no spread to fit). b carries the
        second-order finite difference of l in lam: 2 % of max |b| at 40 grid steps (measured 1.7 %,
        0.44 % at 80)."""
    oracle, mean, var = _diag_gaussian()
    process = VPLinear()
    d = oracle.denoiser(process)
    x = process.prior_sample(
        (16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    stats = estimate_statistics(d, x, n_grid=40, probes="exact")
    rho2 = torch.exp(-2 * stats.lam)[:, None]
    assert torch.allclose(stats.l, rho2 / (var + rho2), rtol=0, atol=1e-10)
    assert stats.s.abs().max() < 1e-8
    b_exact = 2 * mean * var * rho2 / (var + rho2) ** 2
    assert float((stats.b - b_exact).abs().max()) < 0.02 * float(b_exact.abs().max())
    # Rademacher probes are exact too when the Jacobian is diagonal (v * (J v) = diag J)
    st2 = estimate_statistics(d, x, n_grid=10, probes=2)
    rho2 = torch.exp(-2 * st2.lam)[:, None]
    assert torch.allclose(st2.l, rho2 / (var + rho2), rtol=0, atol=1e-10)


def test_v3_with_exact_statistics_solves_gaussian_flow_in_few_steps():
    """With its EMS, the PF-ODE of diagonal Gaussian data is linear in g: DPM-Solver-v3 is exact
    up to the estimation error of b (>= 50x better than DPM-Solver++ at 5 steps)."""
    oracle, _, _ = _diag_gaussian()
    process = VPLinear()
    d = oracle.denoiser(process)
    x = process.prior_sample(
        (64, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    stats = estimate_statistics(d, x[:16], n_grid=60, probes="exact")
    grid = make_grid(process, 5, final="t_min")
    exact = oracle.ode_solution(x, float(grid[0]), float(grid[-1]), process)
    e_v3 = _rmse(dpm_solver_v3(d, x, grid, statistics=stats), exact)
    e_pp = _rmse(dpmpp_multistep(d, x, grid, order=2), exact)
    assert e_v3 < 5e-3 and e_v3 < e_pp / 50, (e_v3, e_pp)  # measured 1.4e-3 vs 0.18


def test_v3_on_a_mixture_improves_on_dpmpp_at_low_nfe():
    """EMS fitted on 64 calibration paths of the smooth 2-D mixture (VE 80 -> 0.002): at NFE 10
    v3 with its statistics beats the degenerate (DPM-Solver++-like) run against the DOP853
    reference (measured 0.030 vs 0.073 RMSE). On the sharp mixtures the statistics, a mean-field
    linearisation of a multimodal denoiser, do not help reliably (see docs/benchmarks.md)."""
    process = VE()
    d = toy_gmm(2, "smooth").denoiser(process)
    g = torch.Generator().manual_seed(3)
    calib = 80.0 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    x = 80.0 * torch.randn(128, 2, generator=g, dtype=torch.float64)
    stats = estimate_statistics(d, calib, n_grid=60)
    ref = reference_ode(d, x, 1.0, process.t_min, rtol=1e-10, atol=1e-10)
    grid = make_grid(process, 10, final="t_min")
    e_fit = _rmse(dpm_solver_v3(d, x, grid, statistics=stats), ref)
    e_deg = _rmse(dpm_solver_v3(d, x, grid), ref)
    assert e_fit < 0.7 * e_deg, (e_fit, e_deg)


def test_statistics_save_and_load_round_trip(tmp_path):
    process, d, x = _gmm_case(16)
    stats = estimate_statistics(d, x, n_grid=20, guidance=1.5)
    folder = stats.save(tmp_path / "ems")
    back = ModelStatistics.load(folder)
    for k in ("lam", "l", "s", "b"):
        assert torch.equal(getattr(back, k), getattr(stats, k))
    assert back.meta == {**stats.meta}
    assert back.meta["guidance"] == 1.5 and back.meta["n_grid"] == 20
    grid = make_grid(process, 6)
    assert torch.equal(
        dpm_solver_v3(d, x, grid, statistics=back), dpm_solver_v3(d, x, grid, statistics=stats)
    )
    with pytest.raises(FileExistsError, match="force=True"):
        stats.save(folder, force=False)
    (folder / "statistics.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        ModelStatistics.load(folder)
    with pytest.raises(FileNotFoundError, match="estimate_statistics"):
        ModelStatistics.load(tmp_path / "nothing")


def test_statistics_validation_errors():
    process, d, x = _gmm_case(8)
    with pytest.raises(ValueError, match="increasing"):
        ModelStatistics(
            torch.tensor([1.0, 0.0]), torch.ones(2, 2), torch.zeros(2, 2), torch.zeros(2, 2)
        )
    with pytest.raises(ValueError, match="leading dimension"):
        ModelStatistics(
            torch.tensor([0.0, 1.0]), torch.ones(3, 2), torch.zeros(2, 2), torch.zeros(2, 2)
        )
    lam2 = torch.tensor([-20.0, 20.0], dtype=torch.float64)
    wrong = ModelStatistics(lam2, torch.ones(2, 5), torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="event shape"):
        dpm_solver_v3(d, x, make_grid(process, 5), statistics=wrong)
    with pytest.raises(ValueError, match="order"):
        dpm_solver_v3(d, x, make_grid(process, 5), order=4)
    with pytest.raises(ValueError, match="probes"):
        estimate_statistics(d, x, probes="many")


def test_statistics_interpolation_is_piecewise_linear():
    lam = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    l = torch.tensor([[1.0], [3.0], [7.0]], dtype=torch.float64)
    st = ModelStatistics(lam, l, torch.zeros_like(l), torch.zeros_like(l))
    got = st.at(torch.tensor([-1.0, 0.5, 2.0, 5.0], dtype=torch.float64))[0][:, 0]
    assert torch.allclose(got, torch.tensor([1.0, 2.0, 5.0, 7.0], dtype=torch.float64))
    assert math.isclose(float(st.at(torch.tensor([3.0]))[0]), 7.0)
