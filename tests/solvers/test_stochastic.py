"""Stochastic samplers: per-sample seeding, and the sample law against exact data at high NFE."""

from __future__ import annotations

import pytest
import torch
from sciffusion.metrics import sliced_wasserstein
from sciffusion.oracles import DiscreteOracle, toy_gmm
from sciffusion.processes import VE, LinearInterpolant, VPLinear
from sciffusion.solvers import SOLVERS, ddim, make_grid, per_sample_generators, sample, si_sde

SDE = [n for n, s in SOLVERS.items() if s.kind == "sde"]
DISCRETE = [n for n, s in SOLVERS.items() if s.kind == "discrete"]


@pytest.mark.parametrize("name", SDE)
def test_per_sample_seeds_do_not_depend_on_the_batch(name):
    process = VPLinear()
    d = toy_gmm(2, "sharp").denoiser(process)
    x = process.prior_sample(
        (6, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    grid = make_grid(process, 12)
    full = sample(name, d, x, grid, generator=per_sample_generators(range(6)))
    part = sample(name, d, x[[4, 1]], grid, generator=per_sample_generators([4, 1]))
    assert torch.allclose(full[[4, 1]], part, rtol=0, atol=1e-12)
    other = sample(name, d, x, grid, generator=per_sample_generators(range(10, 16)))
    assert not torch.allclose(full, other)  # the noise is really used


def test_ddim_eta_per_sample_seeds():
    process = VE()
    d = toy_gmm(2, "sharp").denoiser(process)
    x = process.prior_sample(
        (4, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    grid = make_grid(process, 8)
    full = ddim(d, x, grid, eta=0.5, generator=per_sample_generators(range(4)))
    part = ddim(d, x[2:], grid, eta=0.5, generator=per_sample_generators([2, 3]))
    assert torch.allclose(full[2:], part, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", DISCRETE)
def test_token_samplers_per_sample_seeds(name):
    oracle = DiscreteOracle(
        torch.rand(27, generator=torch.Generator().manual_seed(0)), vocab_size=3, length=3
    )
    d = oracle.denoiser()
    x = d.process.prior_sample((6, 3))
    grid = make_grid(d.process, 4, "uniform_t")
    full = sample(name, d, x, grid, generator=per_sample_generators(range(6)))
    part = sample(name, d, x[[5, 0]], grid, generator=per_sample_generators([5, 0]))
    assert torch.equal(full[[5, 0]], part)


N = 2000


@pytest.fixture(scope="module")
def sharp():
    """Sharp 2-D mixture (VE 80 -> 0.002): start points, exact p_{t_min} samples, and the
    sliced-W2 between two exact sample sets (the floor)."""
    process = VE()
    gmm = toy_gmm(2, "sharp")
    g = torch.Generator().manual_seed(1)
    x = 80.0 * torch.randn(N, 2, generator=g, dtype=torch.float64)
    s_min = float(process.sigma(process.t_min))
    exact = [
        gmm.sample(N, generator=g) + s_min * torch.randn(N, 2, generator=g, dtype=torch.float64)
        for _ in range(2)
    ]
    floor = sliced_wasserstein(exact[0], exact[1], generator=torch.Generator().manual_seed(5))
    return gmm, process, x, exact[0], floor


def _law_error(gmm, out, exact) -> tuple[float, float]:
    tv = gmm.mode_weight_tv(out)
    sw = sliced_wasserstein(out, exact, generator=torch.Generator().manual_seed(5))
    return tv, sw


@pytest.mark.parametrize("name", SDE)
def test_sample_law_at_the_floor(name, sharp):
    """At 100 steps every SDE sampler reaches the sampling floor of 2000 points: mode-weight TV
    < 0.05 (floor ~0.02) and sliced W2 < 0.05 to exact samples (floor printed by the fixture)."""
    gmm, process, x, exact, floor = sharp
    d = gmm.denoiser(process)
    out = sample(
        name,
        d,
        x,
        make_grid(process, 100, final="t_min"),
        generator=torch.Generator().manual_seed(7),
    )
    tv, sw = _law_error(gmm, out, exact)
    assert tv < 0.05 and sw < max(0.05, 2 * floor), (name, tv, sw, floor)


def test_law_check_detects_too_few_steps(sharp):
    """Negative control: Euler-Maruyama with 8 steps is far from the floor (over-wide modes)."""
    gmm, process, x, exact, _ = sharp
    out = sample(
        "euler_maruyama",
        gmm.denoiser(process),
        x,
        make_grid(process, 8, final="t_min"),
        generator=torch.Generator().manual_seed(7),
    )
    tv, sw = _law_error(gmm, out, exact)
    assert tv > 0.1 and sw > 0.05


@pytest.mark.parametrize("w", ["sigma", "sbdm", "constant", lambda t: 0.5 * t])
def test_stochastic_interpolant_any_diffusion(w, sharp):
    """SI SDE on the linear interpolant: the marginals hold for any w(t) (SiT)."""
    gmm, _, _, exact, floor = sharp
    process = LinearInterpolant()
    d = gmm.denoiser(process)
    x = torch.randn(N, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid = make_grid(process, 200, "uniform_t", t_start=0.999, t_end=2.5e-5, final="t_min")
    out = si_sde(d, x, grid, w=w, generator=torch.Generator().manual_seed(8))
    tv, sw = _law_error(gmm, out, exact)
    assert tv < 0.05 and sw < max(0.05, 2 * floor), (w, tv, sw)
