"""Flow matching: Euler and Heun in ``t`` on the velocity (Lipman et al. 2023; Liu et al. 2023).

The velocity of ``y_t = alpha(t) y0 + sigma(t) eps`` is ``v = dy/dt = alpha' D + sigma' eps_hat``
with ``eps_hat = (y - alpha D) / sigma`` (:func:`sciffusion.conversions.velocity_from_x0`), and
Euler reads ``y_{t'} = y_t + (t' - t) v``. For the linear interpolant (``alpha = 1 - t``,
``sigma = t``) this is exactly DDIM: ``y_t + (t' - t)(eps_hat - D) = (1 - t') D + t' eps_hat``.
Heun averages ``v`` at both ends (2 calls per step). A step to ``t = 0`` returns the estimate ``D``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import Point, eps_of, prepare, report, steps

__all__ = ["flow_euler", "flow_heun", "velocity"]


def velocity(y: Tensor, d: Tensor, p: Point, d_alpha: float, d_sigma: float) -> Tensor:
    """``v = alpha' D + sigma' (y - alpha D) / sigma`` at a point with ``sigma > 0``."""
    return d * d_alpha + eps_of(y, d, p) * d_sigma


def _derivs(process, grid: Tensor) -> tuple[list[float], list[float]]:
    g = grid.to(torch.float64)
    return process.d_alpha(g).tolist(), process.d_sigma(g).tolist()


def flow_euler(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """Euler in ``t`` on the flow velocity (diffusers' ``FlowMatchEulerDiscreteScheduler``)."""
    return _run(denoiser, x, grid, cond, callback, progress, heun=False)


def flow_heun(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """Heun in ``t`` on the flow velocity (2 calls per step, 1 for a final step to ``t = 0``)."""
    return _run(denoiser, x, grid, cond, callback, progress, heun=True)


def _run(denoiser, x, grid, cond, callback, progress, *, heun: bool) -> Tensor:
    name = "flow_heun" if heun else "flow_euler"
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    da, ds = _derivs(s.process, s.t)
    for i in steps(len(s) - 1, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0:
            y_new = d * pt.alpha
        else:
            dt = pt.t - ps.t
            v0 = velocity(y, d, ps, da[i], ds[i])
            y_new = y + v0 * dt
            if heun:
                v1 = velocity(y_new, model(y_new, i + 1), pt, da[i + 1], ds[i + 1])
                y_new = y + (v0 + v1) * (0.5 * dt)
        y = y_new
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)
