"""Mean-reverting diffusion: IR-SDE posterior and loss, the MR Sampler (MaRS), notes/01 B3."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion import GaussianOracle, MeanReverting, VPDiscrete, solvers
from sciffusion.inverse import (
    ir_sde_euler_maruyama,
    ir_sde_loss,
    ir_sde_posterior,
    mr_grid,
    mr_sampler,
)

PROC = MeanReverting(max_sigma=50 / 255, eps=0.005)

# notes/01 B3: x0 ~ N(0, .25^2), mu = x0 + N(0, .1^2), mu = 0.3  ->  p(x0 | mu) = N(0.259, 0.093^2)
VAR = 1 / (1 / 0.25**2 + 1 / 0.1**2)
MEAN = 0.3 * VAR / 0.1**2
STD = math.sqrt(VAR)


def _b3():
    oracle = GaussianOracle(
        torch.tensor([MEAN], dtype=torch.float64), torch.tensor([[VAR]], dtype=torch.float64)
    )
    return oracle.denoiser(PROC)


def ode_error(nfe: int, **kw) -> float:
    """Exact relative W2 error of a deterministic MaRS run on B3: the ODE map is affine in the
    start, so two starts (``z = 0, 1``) give the output law ``N(a, b^2)`` without Monte Carlo."""
    mu = torch.full((2, 1), 0.3, dtype=torch.float64)
    grid = mr_grid(
        PROC,
        nfe,
        spacing=kw.get("spacing", "uniform_t"),
        denoise_last=kw.get("denoise_last", True),
    )
    x = mu + float(PROC.sigma(grid[0])) * torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = mr_sampler(_b3(), mu, num_steps=nfe, x=x, **kw)
    a, b = float(out[0]), abs(float(out[1] - out[0]))
    return math.hypot(a - MEAN, b - STD) / STD


def test_ir_sde_posterior_is_gaussian_conditioning():
    """``q(x_s | x_t, x0)`` from the OU transition ``x_t = mu + A (x_s - mu) + lam sqrt(1 - A^2) n``
    and the marginal of ``x_s``, by plain Gaussian conditioning."""
    t = torch.tensor([0.3, 0.7, 1.0], dtype=torch.float64)
    s = torch.tensor([0.2, 0.69, 0.5], dtype=torch.float64)
    x0 = torch.tensor([[0.4], [-1.0], [2.0]], dtype=torch.float64)
    mu = torch.tensor([[0.1], [0.3], [-0.5]], dtype=torch.float64)
    xt = torch.tensor([[0.2], [0.0], [1.0]], dtype=torch.float64)
    mean, var = ir_sde_posterior(PROC, xt, x0, mu, t, s)
    lam2 = PROC.max_sigma**2
    aS, aT = PROC.alpha(s), PROC.alpha(t)
    A = aT / aS
    m_s = mu[:, 0] + aS * (x0[:, 0] - mu[:, 0])  # E x_s
    v_s = lam2 * (1 - aS**2)  # Var x_s
    m_t = mu[:, 0] + A * (m_s - mu[:, 0])
    v_t = A**2 * v_s + lam2 * (1 - A**2)
    assert torch.allclose(v_t, PROC.sigma(t) ** 2, rtol=1e-12)  # transition matches marginals
    gain = A * v_s / v_t
    assert torch.allclose(mean[:, 0], m_s + gain * (xt[:, 0] - m_t), atol=1e-12)
    assert torch.allclose(var, v_s - gain * A * v_s, rtol=1e-10)


def test_ir_sde_loss_vanishes_with_the_step_for_the_true_x0(gen):
    """With ``x0_hat = x0`` the reverse-SDE Euler mean differs from ``x*_{t-1}`` by a local error
    that vanishes with ``dt`` (measured L1: 2.5e-2 / 3.1e-4 / 3.1e-6 at T = 10 / 100 / 1000); a
    wrong sign in drift or score would leave an O(sqrt(dt)) mismatch instead."""
    x0 = torch.randn(4000, 3, generator=gen, dtype=torch.float64)
    mu = x0 + 0.1 * torch.randn(4000, 3, generator=gen, dtype=torch.float64)

    class Cheat:  # returns the true x0: isolates the loss algebra from any model error
        process = PROC

        def __call__(self, x, t, cond=None):
            return x0

    coarse = float(ir_sde_loss(Cheat(), x0, mu, num_steps=100, generator=gen))
    fine = float(ir_sde_loss(Cheat(), x0, mu, num_steps=1000, generator=gen))
    zero = float(ir_sde_loss(_zero(), x0, mu, num_steps=100, generator=gen))
    assert fine < coarse / 10 and coarse < zero / 5, (fine, coarse, zero)


def _zero():
    class Zero:
        process = PROC

        def __call__(self, x, t, cond=None):
            return torch.zeros_like(x)

    return Zero()


def test_ir_sde_loss_trains_a_parameter(gen):
    """Gradient reaches the network and a step of SGD lowers the loss."""
    w = torch.zeros((), dtype=torch.float64, requires_grad=True)

    class Lin:
        process = PROC

        def __call__(self, x, t, cond=None):
            return w * x + (1 - w) * cond

    x0 = torch.randn(512, 2, generator=gen, dtype=torch.float64)
    mu = x0 + 0.05 * torch.randn(512, 2, generator=gen, dtype=torch.float64)
    loss = ir_sde_loss(Lin(), x0, mu, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert w.grad is not None and float(w.grad) != 0.0


def test_ode1_noise_equals_data_equals_ddim():
    """notes/01: with an exact model first-order data and noise prediction coincide (to 1e-6)."""
    mu = torch.full((3, 1), 0.3, dtype=torch.float64)
    x = mu + torch.tensor([[-1.0], [0.0], [2.0]], dtype=torch.float64) * 0.19
    data = mr_sampler(_b3(), mu, num_steps=10, order=1, x=x)
    noise = mr_sampler(_b3(), mu, num_steps=10, order=1, parameterization="noise", x=x)
    ddim = solvers.ddim(_b3(), x, mr_grid(PROC, 10), cond=mu)
    assert torch.allclose(data, noise, atol=1e-6)
    assert torch.allclose(data, ddim, atol=1e-10)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ode_orders_converge(order):
    """Measured relative W2 at NFE 50 / 100: 0.043 / 0.022 (order 1), 0.011 / 0.003 (2),
    0.005 / 0.001 (3)."""
    e50, e100 = ode_error(50, order=order), ode_error(100, order=order)
    assert e100 < e50 and e100 < 0.03 / order, (e50, e100)


def test_b3_order2_acceptance():
    """notes/01 B3 (exact, no Monte Carlo): order-2 data-prediction error falls >= 3x from NFE 10
    to 20. Measured relative W2 errors at NFE 5/10/20/50/100: MaRS ``linspace`` grid
    0.315 / 0.041 / 0.032 / 0.011 / 0.003 (at 20 the ``denoise_last`` jump, which drops
    ``Var(x0 | x_t_end)``, dominates); time-quadratic grid 0.184 / 0.144 / 0.022 / 0.003 / 0.001.
    """
    e10, e20 = ode_error(10, spacing="time_quadratic"), ode_error(20, spacing="time_quadratic")
    assert e20 * 3 <= e10, (e10, e20)
    assert ode_error(100) < 0.005  # second order on the default grid (0.011 -> 0.003 at 50 -> 100)


def _em_error(nfe: int, n: int = 20000) -> float:
    mu = torch.full((n, 1), 0.3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    grid = torch.linspace(1, 0, nfe + 1, dtype=torch.float64)
    x = mu + float(PROC.sigma(grid[0])) * torch.randn(mu.shape, generator=g, dtype=torch.float64)
    out = ir_sde_euler_maruyama(_b3(), x, grid, cond=mu, generator=g)
    return math.hypot(float(out.mean()) - MEAN, float(out.std()) - STD) / STD


def test_euler_maruyama_converges_to_the_posterior():
    """Measured (N = 2e5) relative W2 at NFE 10 / 100: 0.050 / 0.006; MC floor ~0.01 at 2e4."""
    assert _em_error(10) > 0.03
    assert _em_error(100) < 0.025


@pytest.mark.parametrize(
    ("parameterization", "order"), [("data", 1), ("data", 2), ("noise", 1), ("noise", 2)]
)
def test_sde_solvers_sample_the_posterior(parameterization, order):
    mu = torch.full((20000, 1), 0.3, dtype=torch.float64)
    out = mr_sampler(
        _b3(),
        mu,
        num_steps=50,
        solver_type="sde",
        parameterization=parameterization,
        order=order,
        generator=torch.Generator().manual_seed(0),
    )
    err = math.hypot(float(out.mean()) - MEAN, float(out.std()) - STD) / STD
    assert err < 0.12, err


def test_lambda_min_clips_the_grid_start():
    full = mr_grid(PROC, 10, lambda_min=-math.inf)
    assert float(full[0]) == pytest.approx(PROC.t_max)
    clipped = mr_grid(PROC, 10, lambda_min=-2.0)
    assert 0.5 * float(PROC.log_snr(clipped[0])) == pytest.approx(-2.0, abs=1e-6)
    assert float(clipped[0]) < float(full[0])
    mu = torch.full((2, 1), 0.3, dtype=torch.float64)
    seen = []
    mr_sampler(_b3(), mu, num_steps=5, lambda_min=-2.0, callback=lambda i: seen.append(i["t"]))
    assert seen[0] == pytest.approx(float(clipped[0]))


def test_denoise_last_controls_the_final_step():
    jump = mr_grid(PROC, 8)
    assert float(jump[-1]) == 0.0 and jump.numel() == 9
    stop = mr_grid(PROC, 8, denoise_last=False)
    assert float(stop[-1]) > 0.0
    mu = torch.full((4, 1), 0.3, dtype=torch.float64)
    x = mu + 0.19 * torch.linspace(-1, 1, 4, dtype=torch.float64)[:, None]
    a = mr_sampler(_b3(), mu, num_steps=8, x=x)
    b = mr_sampler(_b3(), mu, num_steps=8, x=x, denoise_last=False)
    assert not torch.allclose(a, b)


def test_errors():
    mu = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="orders"):
        mr_sampler(_b3(), mu, solver_type="sde", order=3)
    with pytest.raises(ValueError, match="unknown MaRS solver"):
        mr_sampler(_b3(), mu, parameterization="velocity")
    vp = GaussianOracle(torch.zeros(1), torch.eye(1)).denoiser(VPDiscrete())
    with pytest.raises(TypeError, match="MeanReverting"):
        mr_sampler(vp, mu)
    with pytest.raises(TypeError, match="MeanReverting"):
        ir_sde_loss(vp, mu, mu)
    with pytest.raises(ValueError, match="one shape"):
        ir_sde_loss(_b3(), mu, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="finite"):
        mr_sampler(_b3(), torch.full((2, 1), math.nan))


@pytest.mark.parametrize("prediction", ["eps", "v", "velocity", "score"])
def test_network_parameterisations_give_the_same_sampler(prediction):
    """MaRS on networks trained for noise / v / velocity / score targets: wrapped by
    ``Denoiser(prediction=...)`` every solver sees the same ``x0_hat``, so the samples agree."""
    from sciffusion import Denoiser
    from sciffusion.conversions import from_x0

    oracle = _b3()

    def net(x_in, noise_cond, cond):  # the exact network of each target type
        t = PROC.t_of_log_snr(-8.0 * noise_cond.to(torch.float64)).to(x_in.dtype)
        x = x_in / PROC.input_scale(t)[:, None]
        return from_x0(prediction, oracle(x, t, cond), x, t, PROC, mu=cond)

    D = Denoiser(net, PROC, prediction=prediction)
    mu = torch.full((3, 1), 0.3, dtype=torch.float64)
    x = mu + 0.19 * torch.tensor([[-1.0], [0.0], [1.5]], dtype=torch.float64)
    kw = dict(num_steps=10, x=x, denoise_last=False)
    for solver_type, param in (("ode", "data"), ("ode", "noise")):
        ref = mr_sampler(oracle, mu, solver_type=solver_type, parameterization=param, **kw)
        out = mr_sampler(D, mu, solver_type=solver_type, parameterization=param, **kw)
        assert torch.allclose(out, ref, atol=1e-8), (solver_type, param)
