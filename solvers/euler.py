"""Euler and Heun (EDM, Karras et al. 2022, Alg. 1) in the VE frame ``x~ = x / alpha``, ``s = sigma / alpha``.

``d x~ / d s = (x~ - D) / s``; a step to ``s = 0`` is a plain Euler step (= the denoiser's estimate).
"""

from __future__ import annotations

from torch import Tensor

from ._common import c, prepare, report, steps

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
    st = s.sigma / s.alpha
    for i in steps(len(s) - 1, progress, name):
        a, a_n = s.alpha[i], s.alpha[i + 1]
        xt = y / c(a, y)
        d0 = model(y, i)
        slope = (xt - d0) / c(st[i], y)
        xn = xt + c(st[i + 1] - st[i], y) * slope
        if second_order and float(st[i + 1]) > 0:
            d1 = model(xn * c(a_n, y), i + 1)
            slope1 = (xn - d1) / c(st[i + 1], y)
            xn = xt + c(st[i + 1] - st[i], y) * 0.5 * (slope + slope1)
        y = xn * c(a_n, y)
        report(
            callback,
            i=i,
            t=float(s.t[i]),
            t_next=float(s.t[i + 1]),
            x=model.output(y),
            x0=model.output(d0),
        )
    return model.output(y)
