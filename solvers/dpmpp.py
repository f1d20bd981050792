"""DPM-Solver++ multistep (Lu et al. 2022b) in data prediction, on the half log-SNR ``lam``.

First order: ``x' = (sigma'/sigma) x - alpha' (e^{-h} - 1) D`` (= DDIM). 2M, Alg. 2 of the paper:
``D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}`` with ``r = h_{i-1} / h_i``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import c, prepare, report, steps

__all__ = ["dpmpp_2m"]


def _first_order(y, d, s, i):
    a_n, s_n = s.alpha[i + 1], s.sigma[i + 1]
    if float(s_n) == 0:
        return d
    h = s.lam[i + 1] - s.lam[i]
    return c(s_n / s.sigma[i], y) * y - c(a_n * torch.expm1(-h), y) * d


def dpmpp_2m(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    cond=None,
    lower_order_final: bool = True,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M). ``lower_order_final`` uses a first-order last step when the grid is
    shorter than 15 steps (diffusers' default) and always for a step to ``t = 0``."""
    y, model, s = prepare(denoiser, x, grid, cond, name="dpmpp_2m")
    n = len(s) - 1
    d_prev = None
    for i in steps(n, progress, "dpmpp_2m"):
        d = model(y, i)
        last = i == n - 1
        first_order = (
            d_prev is None or float(s.sigma[i + 1]) == 0 or (last and lower_order_final and n < 15)
        )
        if first_order:
            y = _first_order(y, d, s, i)
        else:
            h = s.lam[i + 1] - s.lam[i]
            r = (s.lam[i] - s.lam[i - 1]) / h
            d_eff = c(1 + 1 / (2 * r), y) * d - c(1 / (2 * r), y) * d_prev
            y = (
                c(s.sigma[i + 1] / s.sigma[i], y) * y
                - c(s.alpha[i + 1] * torch.expm1(-h), y) * d_eff
            )
        d_prev = d
        report(
            callback,
            i=i,
            t=float(s.t[i]),
            t_next=float(s.t[i + 1]),
            x=model.output(y),
            x0=model.output(d),
        )
    return model.output(y)
