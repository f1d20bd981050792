"""Denoiser contract and pure conversions: round trips to 1e-6 for every process, any rank."""

from __future__ import annotations

import pytest
import torch
from sciffusion.conversions import PREDICTIONS, from_x0, to_x0, velocity_from_x0
from sciffusion.denoiser import Denoiser, MaskedDenoiser, native_weight
from sciffusion.oracles import GaussianOracle
from sciffusion.processes import (
    VE,
    LinearInterpolant,
    Masked,
    MeanReverting,
    ResShift,
    TrigInterpolant,
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
    TrigInterpolant(),
    MeanReverting(),
    ResShift(),
]
SHAPES = [(5, 2), (5, 1, 7), (5, 3, 4, 6), (5, 2, 3, 4, 5)]


@pytest.mark.parametrize("p", PROCS, ids=[p.name for p in PROCS])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"rank{len(s)}")
@pytest.mark.parametrize("pred", [q for q in PREDICTIONS if q != "x0"])
def test_round_trip(p, shape, pred, gen):
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x0 = torch.randn(shape, generator=gen, dtype=torch.float64)
    mu = torch.randn(shape, generator=gen, dtype=torch.float64) if p.has_mean else None
    t = 0.05 + 0.9 * torch.rand(shape[0], generator=gen, dtype=torch.float64)
    out = from_x0(pred, x0, x, t, p, mu=mu)
    assert out.shape == x.shape
    assert torch.allclose(to_x0(pred, out, x, t, p, mu=mu), x0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("p", PROCS, ids=[p.name for p in PROCS])
def test_conversions_agree_with_the_forward_process(p, gen):
    """With x_t built from (x0, eps): eps/v/score/velocity targets are the textbook ones."""
    x0 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    mu = torch.randn(6, 3, generator=gen, dtype=torch.float64) if p.has_mean else None
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64) + 3.7e-4  # off VPDiscrete's nodes
    xt = p.marginal(x0, t, eps, mu)
    a, s = p.alpha(t)[:, None], p.sigma(t)[:, None]
    y0 = x0 if mu is None else x0 - mu
    assert torch.allclose(from_x0("eps", x0, xt, t, p, mu=mu), eps, atol=1e-10)
    assert torch.allclose(from_x0("score", x0, xt, t, p, mu=mu), -eps / s, atol=1e-9)
    assert torch.allclose(from_x0("v", x0, xt, t, p, mu=mu), a * eps - s * y0, atol=1e-10)
    h = 1e-6  # velocity = d x_t / dt along the path with x0, eps, mu fixed
    fd = (p.marginal(x0, t + h, eps, mu) - p.marginal(x0, t - h, eps, mu)) / (2 * h)
    assert torch.allclose(velocity_from_x0(xt, t, x0, p, mu=mu), fd, atol=1e-6)


def test_linear_interpolant_velocity_is_eps_minus_x0(gen):
    p = LinearInterpolant()
    x0, eps = torch.randn(4, 2, generator=gen), torch.randn(4, 2, generator=gen)
    t = torch.full((4,), 0.3)
    xt = p.marginal(x0, t, eps)
    assert torch.allclose(from_x0("velocity", x0, xt, t, p), eps - x0, atol=1e-6)


class _OracleNet(torch.nn.Module):
    """A 'network' that outputs the exact target of a given prediction type (for wiring tests)."""

    def __init__(self, oracle, process, prediction, sigma_data=1.0):
        super().__init__()
        self.oracle, self.process, self.prediction = oracle, process, prediction
        self.sigma_data = sigma_data
        self.t = None

    def forward(self, x_in, c_noise, cond=None):
        t = self.process.t_of_log_snr(-8 * c_noise)
        x = x_in / self.process.input_scale(t, self.sigma_data)[:, None]
        x0 = self.oracle.posterior_mean(x, t, self.process)
        if self.prediction == "edm":
            from sciffusion.denoiser import edm_coefficients

            a, s = self.process.alpha(t)[:, None], self.process.sigma(t)[:, None]
            c_skip, c_out = edm_coefficients(a, s, self.sigma_data)
            return (x0 - c_skip * x / a) / c_out
        return from_x0(self.prediction, x0, x, t, self.process)


@pytest.mark.parametrize("pred", [*PREDICTIONS, "edm"])
@pytest.mark.parametrize("p", [VPLinear(), VE(), LinearInterpolant()], ids=lambda p: p.name)
def test_denoiser_wrapper_recovers_x0_for_every_prediction(pred, p, gen):
    g = GaussianOracle(
        torch.tensor([0.3, -0.2], dtype=torch.float64),
        torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64),
    )
    D = Denoiser(_OracleNet(g, p, pred, 0.5), p, pred, sigma_data=0.5)
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64) * 2
    t = torch.linspace(0.05, 0.95, 8, dtype=torch.float64)
    assert torch.allclose(D(x, t), g.posterior_mean(x, t, p), atol=1e-6)


def test_native_weights_convert_losses(gen):
    """The prediction's own squared error equals native_weight * |x0_hat - x0|^2."""
    p = VPLinear()
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    x0 = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    x0h = x0 + 0.1 * torch.randn(16, 3, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 16, dtype=torch.float64)
    for pred in ("eps", "v", "score", "velocity", "x0"):
        native = ((from_x0(pred, x0h, x, t, p) - from_x0(pred, x0, x, t, p)) ** 2).sum(1)
        w = native_weight(pred, p, t)
        assert torch.allclose(native, w * ((x0h - x0) ** 2).sum(1), rtol=1e-8)


def test_denoiser_errors(gen):
    net = torch.nn.Identity()
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        Denoiser(lambda x, c, cond: x, VPLinear(), "noise")
    with pytest.raises(TypeError, match="MaskedDenoiser"):
        Denoiser(net, Masked(vocab_size=3))
    D = Denoiser(lambda x, c, cond: x[:, :1], VPLinear(), "eps")
    with pytest.raises(ValueError, match="must return its input's shape"):
        D(torch.zeros(2, 3), 0.5)
    D = Denoiser(lambda x, c, cond: x, VPLinear(), "eps")
    with pytest.raises(ValueError, match="non-finite"):
        D(torch.tensor([[float("nan"), 0.0]]), 0.5)
    with pytest.raises(ValueError, match="one time per sample"):
        D(torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="no mu was given"):
        Denoiser(lambda x, c, cond: x, MeanReverting(), "x0")(torch.zeros(2, 3), 0.5)


def test_masked_denoiser_carries_over_unmasked_tokens(gen):
    p = Masked(vocab_size=4)
    net = lambda x, c, cond: torch.randn(*x.shape, 4, generator=gen)  # noqa: E731
    D = MaskedDenoiser(net, p)
    x = torch.tensor([[0, 4, 2, 4]])
    probs = D(x, 0.5)
    assert probs.shape == (1, 4, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 4, dtype=probs.dtype))
    assert probs[0, 0, 0] == 1 and probs[0, 2, 2] == 1
    with pytest.raises(ValueError, match="expected"):
        MaskedDenoiser(lambda x, c, cond: torch.zeros(*x.shape, 9), p)(x, 0.5)
