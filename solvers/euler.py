"""Euler and Heun (EDM, Karras et al. 2022, Alg. 1) in the VE frame.

With ``x~ = y / alpha`` and ``s = sigma / alpha``: ``d x~ / d s = (x~ - D) / s``; a step to
``s = 0`` is a plain Euler step (= the denoiser's estimate).
"""

from __future__ import annotations

from torch import Tensor

from ._common import ddim_step, prepare, report, steps

__all__ = ["euler", "heun"]


def euler(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
):
    """Euler on the PF-ODE in ``s = sigma/alpha`` (identical to DDIM with ``eta = 0``)."""
    return _run(denoiser, x, grid, cond, callback, progress, second_order=False)


def heun(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
):
    """EDM's Heun (2nd order; Alg. 1 of Karras et al. 2022, no churn). 2 NFE per step, 1 for a
    final step to ``s = 0``."""
    return _run(denoiser, x, grid, cond, callback, progress, second_order=True)


def _run(denoiser, x, grid, cond, callback, progress, *, second_order: bool):
    name = "heun" if second_order else "euler"
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    for i in steps(len(s) - 1, progress, name):
        ps, pt = s[i], s[i + 1]
        d0 = model(y, i)
        if ps.alpha == 0:  # s = inf: the exact first-order map
            y = ddim_step(y, d0, ps, pt)
        else:
            rs, rt = ps.sigma / ps.alpha, pt.sigma / pt.alpha
            xt = y / ps.alpha
            slope = (xt - d0) / rs
            xn = xt + slope * (rt - rs)
            if second_order and rt > 0:
                d1 = model(xn * pt.alpha, i + 1)
                slope1 = (xn - d1) / rt
                xn = xt + (slope + slope1) * (0.5 * (rt - rs))
            y = xn * pt.alpha
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d0))
    return model.output(y)
