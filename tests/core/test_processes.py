"""Processes: exact log-SNR inverses (float64, including the ends), schedules against their
published definitions, marginals, derivatives and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion.processes import (
    PROCESSES,
    VE,
    GaussianProcess,
    LinearInterpolant,
    Masked,
    MeanReverting,
    ResShift,
    StochasticInterpolant,
    TrigInterpolant,
    VPCosine,
    VPDiscrete,
    VPLinear,
    make_process,
    process_from_config,
)

CONTINUOUS = [
    VPLinear(),
    VPCosine(),
    VPDiscrete(),
    VPDiscrete(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    VPDiscrete(beta_schedule="squaredcos_cap_v2"),
    VE(),
    LinearInterpolant(),
    TrigInterpolant(),
    MeanReverting(),
    MeanReverting(theta_schedule="constant", max_sigma=0.5),
    ResShift(),
    ResShift(num_steps=4, kappa=1.0),
]
ALL = [*CONTINUOUS, Masked(vocab_size=7), Masked(vocab_size=3, schedule="cosine")]
IDS = [f"{p.name}-{i}" for i, p in enumerate(ALL)]
T = torch.cat(
    [
        torch.tensor([0.0, 1e-12, 1e-9, 1e-6, 1e-3], dtype=torch.float64),
        torch.linspace(0.01, 0.99, 49, dtype=torch.float64),
        torch.tensor([1 - 1e-6, 1.0], dtype=torch.float64),
    ]
)


@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_log_snr_inverse_is_exact_including_the_ends(p):
    lam = p.log_snr(T)
    assert lam[0] == math.inf  # t = 0 is data
    back = p.t_of_log_snr(lam)
    assert torch.allclose(back, T, rtol=0, atol=1e-9), (back - T).abs().max()
    mid = T[(T > 1e-6) & (T < 1 - 1e-6)]
    assert torch.allclose(p.t_of_log_snr(p.log_snr(mid)), mid, rtol=1e-6, atol=0)


@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_log_snr_decreases(p):
    lam = p.log_snr(T[1:-1])
    assert bool((lam[1:] < lam[:-1]).all())


@pytest.mark.parametrize("p", CONTINUOUS, ids=[p.name for p in CONTINUOUS])
def test_alpha_sigma_match_log_snr_and_derivatives(p):
    # off the nodes of VPDiscrete's piecewise-linear log alpha_bar (kinks have one-sided slopes)
    t = torch.linspace(0.02, 0.98, 25, dtype=torch.float64) + 3.7e-4
    a, s = p.alpha(t), p.sigma(t)
    assert torch.allclose(2 * torch.log(a / s), p.log_snr(t), atol=1e-10)
    h = 1e-6
    fd_a = (p.alpha(t + h) - p.alpha(t - h)) / (2 * h)
    fd_s = (p.sigma(t + h) - p.sigma(t - h)) / (2 * h)
    assert torch.allclose(p.d_alpha(t), fd_a, rtol=1e-5, atol=1e-7)
    assert torch.allclose(p.d_sigma(t), fd_s, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("p", [VPLinear(), VPCosine(), VPDiscrete(), TrigInterpolant()])
def test_variance_preserving(p):
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t), atol=1e-14)


def test_vp_linear_matches_song_et_al():
    p = VPLinear(beta_min=0.1, beta_max=20.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    log_mean_coeff = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1  # score_sde marginal_prob
    assert torch.allclose(p.alpha(t), torch.exp(log_mean_coeff), atol=1e-14)


def test_vp_cosine_matches_nichol_dhariwal():
    p = VPCosine(s=0.008)
    t = torch.linspace(0.01, 0.95, 50, dtype=torch.float64)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    abar = f(t) / f(torch.zeros((), dtype=torch.float64))
    assert torch.allclose(p.alpha(t) ** 2, abar, rtol=1e-12)
    assert p.alpha(1.0) == 0 and p.log_snr(1.0) == -math.inf
    assert math.isclose(float(p.log_snr(p.t_max)), -10.2, abs_tol=1e-9)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_vp_discrete_nodes_are_the_ddpm_alpha_bars(schedule):
    p = VPDiscrete(beta_schedule=schedule)
    abar = torch.cumprod(1 - p.betas(), 0)
    t = p.t_of_step(torch.arange(p.num_steps))
    assert torch.allclose(p.alpha(t) ** 2, abar, rtol=1e-12)
    assert torch.allclose(p.t_of_log_snr(torch.log(abar / (1 - abar))), t, atol=1e-12)


def test_vp_discrete_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="beta_schedule"):
        VPDiscrete(beta_schedule="quadratic")


def test_mean_reverting_matches_ir_sde_marginal():
    p = MeanReverting(max_sigma=0.2, eps=0.005)
    assert math.isclose(float(p.alpha(1.0)), 0.005, rel_tol=1e-12)
    t = torch.linspace(0.0, 1.0, 21, dtype=torch.float64)
    a = p.alpha(t)
    assert torch.allclose(p.sigma(t), 0.2 * torch.sqrt(1 - a**2), atol=1e-14)
    # thetabar is the normalised integral of the IR-SDE cosine theta schedule
    s = 0.008

    def theta(u):
        return (
            1
            - math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
            / math.cos(s / (1 + s) * math.pi / 2) ** 2
        )

    from scipy.integrate import quad

    z = quad(theta, 0, 1, epsabs=1e-14)[0]
    for tt in (0.1, 0.5, 0.9):
        ref = -math.log(0.005) * quad(theta, 0, tt, epsabs=1e-14)[0] / z
        assert math.isclose(float(p.thetabar(tt)), ref, rel_tol=1e-10)


def test_resshift_matches_its_exponential_schedule():
    p = ResShift(num_steps=15, kappa=2.0, power=0.3, min_noise_level=0.2, etas_end=0.99)
    T = 15
    etas_start = min(0.2 / 2.0, 0.2)
    increaser = math.exp(1 / (T - 1) * math.log(0.99 / etas_start))
    power_t = torch.linspace(0, 1, T, dtype=torch.float64) ** 0.3 * (T - 1)
    sqrt_etas = increaser**power_t * etas_start  # ResShift get_named_eta_schedule('exponential')
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    assert torch.allclose(p.sqrt_eta(t), sqrt_etas, rtol=1e-12)
    assert torch.allclose(p.sigma(t), 2.0 * sqrt_etas, rtol=1e-12)
    assert float(p.eta(0.0)) == 0.0


@pytest.mark.parametrize("p", CONTINUOUS, ids=[p.name for p in CONTINUOUS])
def test_marginal_moments(p, gen):
    x0 = torch.full((20000, 2), 0.7, dtype=torch.float64)
    mu = torch.full_like(x0, -0.4) if p.has_mean else None
    t = torch.full((20000,), 0.6, dtype=torch.float64)
    xt = p.marginal(x0, t, p.noise_like(x0, gen), mu)
    a, s = float(p.alpha(0.6)), float(p.sigma(0.6))
    mean = a * 0.7 + (1 - a) * (-0.4 if p.has_mean else 0.0)
    assert abs(float(xt.mean()) - mean) < 4 * s / math.sqrt(40000)
    assert abs(float(xt.std()) / s - 1) < 0.02


def test_mean_processes_demand_mu():
    p = MeanReverting()
    x0 = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"[pP]ass cond=mu"):
        p.marginal(x0, torch.full((3,), 0.5), torch.zeros_like(x0))
    with pytest.raises(ValueError, match="must match the data shape"):
        p.marginal(x0, torch.full((3,), 0.5), torch.zeros_like(x0), torch.zeros(3, 5))


def test_prior_samples(gen):
    assert VE(sigma_max=80).prior_sample((4000, 3), generator=gen).std().item() == pytest.approx(
        80, rel=0.05
    )
    mu = torch.full((5, 2), 3.0)
    x = MeanReverting(max_sigma=0.1).prior_sample((5, 2), generator=gen, mu=mu)
    assert (x - 3).abs().max() < 0.6
    assert (Masked(vocab_size=4).prior_sample((2, 5)) == 4).all()


def test_masked_marginal_masks_at_rate_one_minus_alpha(gen):
    p = Masked(vocab_size=5)
    x0 = torch.randint(0, 5, (4000, 16), generator=gen)
    t = torch.full((4000,), 0.3, dtype=torch.float64)
    xt = p.marginal(x0, t, p.noise_like(x0, gen))
    frac = (xt == p.mask_id).double().mean().item()
    assert abs(frac - 0.3) < 0.01
    assert ((xt == x0) | (xt == p.mask_id)).all()


def test_masked_rejects_bad_tokens():
    p = Masked(vocab_size=5)
    with pytest.raises(TypeError, match="integer token"):
        p.check_tokens(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="vocab_size=5"):
        p.check_tokens(torch.full((2, 3), 9))


def test_registry_round_trip_and_errors():
    for name, cls in PROCESSES.items():
        kwargs = {"vocab_size": 3} if cls is Masked else {}
        p = make_process(name, **kwargs)
        assert process_from_config(p.config()) == p
    assert isinstance(make_process("edm"), VE)
    with pytest.raises(ValueError, match=r"unknown process 'vq'.*known processes"):
        make_process("vq")
    with pytest.raises(ValueError, match="bad parameters for process 've'"):
        make_process("ve", sigma=3)
    with pytest.raises(ValueError, match="no 'name' key"):
        process_from_config({"beta_min": 0.1})


def test_stochastic_interpolant_general_form():
    si = StochasticInterpolant(
        a=lambda t: 1 - t, b=lambda t: t, g=lambda t: torch.sqrt(2 * t * (1 - t)) * 0.5
    )
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    assert torch.allclose(si.t_of_log_snr(si.log_snr(t)), t, atol=1e-12)
    assert isinstance(si, GaussianProcess)
    with pytest.raises(TypeError, match="cannot be serialised"):
        si.config()
    with pytest.raises(ValueError, match="a\\(0\\) = 1"):
        StochasticInterpolant(a=lambda t: 0.5 + 0 * t)
