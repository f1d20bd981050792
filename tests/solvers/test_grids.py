"""Time grids: spacings, ends, final-step policy, user grids unchanged, partial (SDEdit) starts."""

from __future__ import annotations

import math

import pytest
import torch
from sciffusion.oracles import GaussianOracle
from sciffusion.processes import VE, LinearInterpolant, Masked, VPCosine, VPLinear
from sciffusion.solvers import SPACINGS, custom_grid, make_grid, per_sample_generators, sdedit

PROCESSES = [VPLinear(), VE(), VPCosine()]


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: p.name)
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("final", ["denoise", "t_min"])
def test_grid_shape_ends_monotone(process, spacing, final):
    n = 7
    g = make_grid(process, n, spacing, final=final)
    assert g.dtype == torch.float64
    assert g.numel() == n + 1
    assert bool((g[1:] < g[:-1]).all())
    if spacing != "flow_shift":  # flow_shift warps the ends by design
        assert float(g[0]) == process.t_max
        end = float(g[-2]) if final == "denoise" else float(g[-1])
        assert end == process.t_min
    assert (float(g[-1]) == 0.0) == (final == "denoise")


def test_log_snr_grid_is_uniform_in_log_snr():
    p = VPLinear()
    g = make_grid(p, 10, "log_snr", final="t_min")
    d = torch.diff(p.log_snr(g))
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-9)


def test_karras_grid_is_uniform_in_sigma_pow():
    p = VE()
    g = make_grid(p, 12, "karras", rho=7.0, final="t_min")
    u = p.sigma(g) ** (1 / 7)
    d = torch.diff(u)
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-9)


def test_partial_start_and_end():
    p = VE()
    g = make_grid(p, 5, "log_snr", t_start=0.3, t_end=0.01)
    assert float(g[0]) == 0.3 and float(g[-2]) == 0.01 and float(g[-1]) == 0.0


def test_custom_grid_bit_exact():
    times = torch.tensor([0.9, 0.51234567890123, 0.1, 1e-7, 0.0], dtype=torch.float64)
    assert torch.equal(custom_grid(times), times)
    assert custom_grid([0.5, 0.25]).tolist() == [0.5, 0.25]


@pytest.mark.parametrize(
    "bad, match",
    [
        ([0.5, 0.6, 0.1], "strictly decreasing"),
        ([0.5, 0.5, 0.1], "strictly decreasing"),
        ([1.2, 0.5], r"\[0, 1\]"),
        ([0.5, -0.1], r"\[0, 1\]"),
        ([0.5], "at least 2"),
        ([0.5, float("nan")], "NaN"),
    ],
)
def test_custom_grid_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        custom_grid(bad)


def test_grid_errors_are_clear():
    with pytest.raises(ValueError, match="unknown grid spacing"):
        make_grid(VE(), 5, "cosine")
    with pytest.raises(ValueError, match="final-step policy"):
        make_grid(VE(), 5, final="clip")
    with pytest.raises(ValueError, match="integer >= 1"):
        make_grid(VE(), 0)
    with pytest.raises(ValueError, match="t_end < t_start"):
        make_grid(VE(), 5, t_start=0.1, t_end=0.2)
    with pytest.raises(ValueError, match="t_end < t_start <= 1"):
        make_grid(VE(), 5, t_start=1.5)  # no silent clipping to 1
    with pytest.raises(ValueError, match="log-SNR"):  # alpha(1) = 0: no log-SNR grid from t = 1
        make_grid(LinearInterpolant(), 5, "log_snr")
    with pytest.raises(ValueError, match="final='t_min' needs t_end > 0"):
        make_grid(VE(), 5, "uniform_t", t_end=0.0, final="t_min")


def test_grid_to_zero_and_masked_process():
    g = make_grid(LinearInterpolant(), 4, "uniform_t", t_end=0.0)
    assert g.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    g = make_grid(LinearInterpolant(), 3, "uniform_t")  # t_min, then the final denoise
    assert g.tolist() == [1.0, 0.5005, 0.001, 0.0]
    g = make_grid(Masked(vocab_size=3), 4, "uniform_t")  # t_min = 0: the spacing reaches 0
    assert g.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(ValueError, match="uniform_t"):
        make_grid(Masked(vocab_size=3), 4)


def test_sdedit_marginal_and_grid(gen):
    """x_t from sdedit has the exact marginal N(alpha m, alpha^2 S + sigma^2 I) of the process."""
    p = VPLinear()
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
    oracle = GaussianOracle(torch.tensor([1.0, -2.0], dtype=torch.float64), cov)
    x0 = oracle.sample(40_000, generator=gen)
    xt, grid = sdedit(p, x0, 0.4, 8, generator=gen)
    assert float(grid[0]) == 0.4 and grid.numel() == 9 and float(grid[-1]) == 0.0
    a, s = float(p.alpha(0.4)), float(p.sigma(0.4))
    assert torch.allclose(xt.mean(0), a * oracle.mean, atol=0.02)
    assert torch.allclose(torch.cov(xt.T), a**2 * cov + s**2 * torch.eye(2).double(), atol=0.03)


def test_sdedit_per_sample_noise_independent_of_batch():
    p = VE()
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    big, _ = sdedit(p, x0, 0.2, 4, generator=per_sample_generators(range(5)))
    small, _ = sdedit(p, x0[2:4], 0.2, 4, generator=per_sample_generators([2, 3]))
    assert torch.equal(big[2:4], small)


def test_sdedit_tokens():
    p = Masked(vocab_size=4)
    x0 = torch.randint(0, 4, (2000, 6), generator=torch.Generator().manual_seed(0))
    xt, grid = sdedit(p, x0, 0.3, 3, spacing="uniform_t", generator=torch.Generator())
    frac = float((xt == p.mask_id).double().mean())
    assert math.isclose(frac, 0.3, abs_tol=0.02)  # linear schedule: P(masked) = t
    assert torch.equal(xt[xt != p.mask_id], x0[xt != p.mask_id])
    assert grid.tolist()[0] == 0.3 and grid.tolist()[-1] == 0.0
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        sdedit(p, x0, 0.0, 3, spacing="uniform_t")
