"""Exact oracles checked against independent ground truth: Monte Carlo, autograd of the exact
log-density (Tweedie), brute-force Gaussian conditioning and the closed-form PF-ODE."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion.conversions import score_from_x0
from sciffusion.metrics import sliced_wasserstein
from sciffusion.oracles import (
    GaussianMixtureOracle,
    GaussianOracle,
    gmm_linear_posterior,
    linear_gaussian_posterior,
    reference_ode,
    toy_gmm,
)
from sciffusion.processes import (
    VE,
    LinearInterpolant,
    MeanReverting,
    ResShift,
    VPCosine,
    VPDiscrete,
    VPLinear,
)

PROCS = [
    VPLinear(),
    VPCosine(),
    VPDiscrete(),
    VE(),
    LinearInterpolant(),
    MeanReverting(),
    ResShift(),
]


def _gaussian(d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = A @ A.T / d + 0.1 * torch.eye(d, dtype=torch.float64)
    return GaussianOracle(torch.randn(d, generator=g, dtype=torch.float64), cov)


def test_gmm_denoiser_matches_importance_sampling(gen):
    """E[x0 | x_t] by self-normalised importance sampling over 4e5 prior draws."""
    gm = toy_gmm(2, "sharp")
    p = VPLinear()
    x0 = gm.sample(400_000, generator=gen)
    for t in (0.2, 0.5):
        a, s = float(p.alpha(t)), float(p.sigma(t))
        pts = torch.tensor([[0.5, 0.2], [-0.3, 0.9]], dtype=torch.float64) * a
        logw = -0.5 * ((pts[:, None, :] - a * x0[None]) ** 2).sum(-1) / s**2
        w = torch.softmax(logw, dim=1)
        mc = w @ x0
        ess = 1 / (w**2).sum(1)
        exact = gm.posterior_mean(pts, torch.full((2,), t, dtype=torch.float64), p)
        se = 4 * gm.covs.diagonal(dim1=1, dim2=2).max().sqrt() / ess.sqrt().min() + 0.02 * s
        assert (mc - exact).abs().max() < se, (mc, exact, ess)


@pytest.mark.parametrize("p", [VPLinear(), VE(), LinearInterpolant()], ids=lambda p: p.name)
def test_tweedie_score_equals_grad_log_density(p, gen):
    gm = toy_gmm(3, "smooth", n_components=4)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    t = torch.full((10,), 0.4, dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, 0.4, p).sum(), x)
    score = score_from_x0(x.detach(), t, gm.posterior_mean(x.detach(), t, p), p)
    assert torch.allclose(score, grad, atol=1e-9)


def test_single_component_mixture_is_the_gaussian(gen):
    g = _gaussian()
    gm = GaussianMixtureOracle(torch.ones(1, dtype=torch.float64), g.mean[None], g.cov[None])
    for p in PROCS:
        x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
        mu = torch.randn(7, 4, generator=gen, dtype=torch.float64) if p.has_mean else None
        t = torch.full((7,), 0.3, dtype=torch.float64)
        assert torch.allclose(
            gm.posterior_mean(x, t, p, mu), g.posterior_mean(x, t, p, mu), atol=1e-12
        )


def test_gaussian_posterior_covariance_by_monte_carlo(gen):
    g = _gaussian(3)
    p = VPLinear()
    t = 0.35
    x0 = g.sample(200_000, generator=gen)
    xt = p.marginal(
        x0,
        torch.full((200_000,), t, dtype=torch.float64),
        torch.randn(x0.shape, generator=gen, dtype=torch.float64),
    )
    resid = x0 - g.posterior_mean(xt, torch.full((200_000,), t, dtype=torch.float64), p)
    emp = resid.T @ resid / len(resid)
    exact = g.posterior_cov(torch.tensor([t], dtype=torch.float64), p)[0]
    assert torch.allclose(emp, exact, atol=5e-3)
    assert resid.mean(0).abs().max() < 5e-3  # Tweedie is the conditional mean


@pytest.mark.parametrize("p", PROCS, ids=[p.name for p in PROCS])
def test_reference_ode_matches_closed_form_flow(p, gen):
    g = _gaussian(3, seed=2)
    x = p.prior_sample(
        (6, 3),
        generator=gen,
        dtype=torch.float64,
        mu=torch.zeros(6, 3, dtype=torch.float64) if p.has_mean else None,
    )
    mu = torch.randn(6, 3, generator=gen, dtype=torch.float64) if p.has_mean else None
    t0, t1 = 0.9 * p.t_max, 0.05
    ref = reference_ode(g.denoiser(p), x, t0, t1, cond=mu)
    exact = g.ode_solution(x, t0, t1, p, mu=mu)
    assert torch.allclose(ref, exact, atol=1e-8), (ref - exact).abs().max()


def test_ode_solution_transports_the_marginals(gen):
    """The exact flow maps N(alpha m, alpha^2 S + sigma^2 I) at t=0.9 to the data marginal."""
    g = _gaussian(2, seed=3)
    p = VPLinear()
    t0 = 0.9
    a, s = float(p.alpha(t0)), float(p.sigma(t0))
    xt = a * g.sample(100_000, generator=gen) + s * torch.randn(
        100_000, 2, generator=gen, dtype=torch.float64
    )
    x0 = g.ode_solution(xt, t0, 1e-9, p)
    assert torch.allclose(x0.mean(0), g.mean, atol=2e-2)
    assert torch.allclose(torch.cov(x0.T), g.cov, atol=3e-2)


def test_linear_gaussian_posterior_by_brute_force_conditioning(gen):
    d, m, sy = 5, 3, 0.2
    g = _gaussian(d, seed=4)
    A = torch.randn(m, d, generator=gen, dtype=torch.float64)
    y = torch.randn(m, generator=gen, dtype=torch.float64)
    post = linear_gaussian_posterior(g.mean, g.cov, A, sy, y)
    # joint Gaussian of (x, y) and the Schur complement
    Sxy = g.cov @ A.T
    Syy = A @ g.cov @ A.T + sy**2 * torch.eye(m, dtype=torch.float64)
    mean = g.mean + Sxy @ torch.linalg.solve(Syy, y - A @ g.mean)
    cov = g.cov - Sxy @ torch.linalg.solve(Syy, Sxy.T)
    assert torch.allclose(post.mean, mean, atol=1e-12)
    assert torch.allclose(post.cov, cov, atol=1e-12)


def test_gmm_linear_posterior_is_bayes_rule(gen):
    prior = toy_gmm(2, "smooth", n_components=3)
    A = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([0.4], dtype=torch.float64)
    post = gmm_linear_posterior(prior, A, 0.3, y)
    # brute force on a fine grid: p(x | y) ∝ p(x) N(y; A x, 0.3^2)
    u = torch.linspace(-2.5, 2.5, 801, dtype=torch.float64)
    X = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    logp = prior.log_prob(X) - 0.5 * ((X @ A.T - y) ** 2).sum(1) / 0.09
    w = torch.softmax(logp, 0)
    assert torch.allclose(w @ X, post.weights @ post.means, atol=1e-4)
    assert torch.allclose(torch.exp(post.log_prob(X)) * (u[1] - u[0]) ** 2, w, atol=1e-6)


def test_mode_weight_tv_and_sliced_wasserstein_floor(gen):
    gm = toy_gmm(2, "sharp")
    a, b = gm.sample(20_000, generator=gen), gm.sample(20_000, generator=gen)
    assert gm.mode_weight_tv(a) < 0.02
    floor = sliced_wasserstein(a, b, generator=gen)
    assert floor < 0.03
    assert sliced_wasserstein(a, b + 0.3, generator=gen) > 5 * floor
    assert math.isclose(sliced_wasserstein(a, a, generator=gen), 0.0, abs_tol=1e-12)


def test_oracle_input_errors():
    with pytest.raises(ValueError, match="symmetric"):
        GaussianOracle(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianOracle(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="covs must be"):
        GaussianMixtureOracle(torch.ones(2), torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="t_end"):
        reference_ode(toy_gmm(2).denoiser(LinearInterpolant()), torch.zeros(1, 2), 1.0, 0.5)
