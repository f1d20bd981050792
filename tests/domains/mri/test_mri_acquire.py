"""Active acquisition (``domains/mri/acquire.py``) on a tiny untrained prior: every strategy
spends exactly the budget, never repeats a column, starts from the calibration block, and the
fixed strategies place the columns they promise."""

from __future__ import annotations

import itertools

import pytest
import torch
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri import fft2c
from sciffusion.domains.mri.acquire import STRATEGIES, acquire, fixed_columns

N = 16


@pytest.fixture(scope="module")
def kspace():
    g = torch.Generator().manual_seed(4)
    return fft2c(simulate_phantoms(2, N, generator=g).image.to(torch.complex64))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_budget_respected_no_repeats(strategy, kspace, tiny_prior):
    a = acquire(
        kspace,
        budget=6,
        strategy=strategy,
        prior=tiny_prior("uncond"),
        center_fraction=0.125,
        n_particles=3,
        nfe=6,
        window=(0.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert a.mask.shape == (2, N) and a.mask.dtype == torch.bool
    assert a.mask.sum(1).tolist() == [6, 6]
    for b in range(2):
        cols = a.order[b].tolist()
        assert len(cols) == len(set(cols)) == 6  # no repeats
        assert cols[:2] == [7, 8]  # calibration block round(16 * 0.125) = 2 around DC 8
        assert set(cols) == set(a.mask[b].nonzero().flatten().tolist())
    assert a.mean.shape == (2, N, N) and a.samples.shape == (2, 3, N, N)
    assert torch.isfinite(torch.view_as_real(a.samples)).all()
    # final hard DC: every particle reproduces the acquired columns (noiseless data)
    m = a.mask[:, None, None, :].to(torch.float32)
    res = (fft2c(a.samples) - kspace[:, None]) * m
    assert float(res.abs().max() / kspace.abs().max()) < 1e-5
    if strategy in ("entropy", "variance"):
        # four choices (the batch chooses together), one per reverse step, in order
        assert len(a.steps) == 4 and a.steps == sorted(set(a.steps))


def test_fixed_columns():
    g = torch.Generator().manual_seed(0)
    eq = fixed_columns("equispaced", 16, (7, 2), 6, g)
    assert len(eq) == 4 and not set(eq) & {7, 8}
    assert min(b - a for a, b in itertools.pairwise(eq)) >= 3  # spread over the 14 free columns
    rnd = fixed_columns("random", 16, (7, 2), 6, g)
    assert len(set(rnd)) == 4 and not set(rnd) & {7, 8}
    assert fixed_columns("random", 16, (7, 2), 2, g) == []


def test_bad_input(kspace, tiny_prior):
    with pytest.raises(ValueError, match="budget"):
        acquire(kspace, budget=40, prior=tiny_prior("uncond"))
    with pytest.raises(ValueError, match="unknown strategy"):
        acquire(kspace, budget=6, strategy="greedy", prior=tiny_prior("uncond"))
    with pytest.raises(ValueError, match="unconditional"):
        acquire(kspace, budget=6, prior=tiny_prior("cond"))
    with pytest.raises(ValueError, match="coil maps"):
        acquire(kspace[:, None], budget=6, prior=tiny_prior("uncond"))
