"""Classifier-free guidance as a denoiser transform."""

from __future__ import annotations

import pytest
import torch
from sciffusion.guidance import cfg
from sciffusion.oracles import GaussianOracle
from sciffusion.processes import VPLinear


class _ClassConditional:
    """Exact conditional denoiser: class 0/1 -> N(-1, .1) / N(+1, .1); zero cond -> the mixture
    approximated by a wide Gaussian (any unconditional denoiser will do for the algebra)."""

    def __init__(self, process):
        self.process = process
        eye = torch.eye(2, dtype=torch.float64)
        self.c = [
            GaussianOracle(torch.full((2,), -1.0, dtype=torch.float64), 0.1 * eye),
            GaussianOracle(torch.full((2,), 1.0, dtype=torch.float64), 0.1 * eye),
        ]
        self.u = GaussianOracle(torch.zeros(2, dtype=torch.float64), 1.1 * eye)

    def __call__(self, x, t, cond=None):
        out = self.u.posterior_mean(x, t, self.process)
        for k in (0, 1):
            sel = cond[:, k] > 0
            out[sel] = self.c[k].posterior_mean(x[sel], t[sel], self.process)
        return out


def test_cfg_formula_and_limits(gen):
    p = VPLinear()
    D = _ClassConditional(p)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    t = torch.full((6,), 0.5, dtype=torch.float64)
    cond = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 1, 0]), 2).double()
    dc, du = D(x, t, cond), D(x, t, torch.zeros_like(cond))
    assert torch.allclose(cfg(D, 1.0)(x, t, cond), dc)
    assert torch.allclose(cfg(D, 0.0)(x, t, cond), du)
    assert torch.allclose(cfg(D, 3.0)(x, t, cond), du + 3 * (dc - du))
    assert cfg(D, 2.0).process is p


def test_cfg_needs_a_condition():
    D = _ClassConditional(VPLinear())
    with pytest.raises(ValueError, match="needs a condition"):
        cfg(D, 2.0)(torch.zeros(1, 2, dtype=torch.float64), 0.5)
