"""DDIM (Song, Meng & Ermon 2021) and DDPM ancestral sampling on any Gaussian process."""

from __future__ import annotations

import math

from torch import Tensor

from ._common import ddim_step, eps_of, noise_like, prepare, report, steps

__all__ = ["ddim", "ddpm"]


def ddim(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    cond=None,
    eta: float = 0.0,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DDIM, Eq. (12) of Song et al. (2021), for any ``alpha, sigma``.

    ``y' = alpha' D + sqrt(sigma'^2 - c^2) eps_hat + c z`` with
    ``eps_hat = (y - alpha D) / sigma`` and ``c = eta sigma' sqrt(1 - e^{-2h})``,
    ``h = lam' - lam``. ``eta = 0`` is the deterministic first-order solver (= DPM-Solver(++)-1 =
    Euler in ``sigma/alpha``); ``eta = 1`` is DDPM ancestral sampling on the grid. ``generator``
    may be one generator per sample.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0; got {eta}")
    y, model, s = prepare(denoiser, x, grid, cond, name="ddim")
    for i in steps(len(s) - 1, progress, "ddim"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if eta == 0 or pt.sigma == 0:
            y = ddim_step(y, d, ps, pt)
        else:
            std = min(eta * pt.sigma * math.sqrt(-math.expm1(2 * (ps.lam - pt.lam))), pt.sigma)
            y = (
                d * pt.alpha
                + eps_of(y, d, ps) * math.sqrt(pt.sigma**2 - std**2)
                + noise_like(y, generator) * std
            )
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def ddpm(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
):
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) on the grid: DDIM with ``eta = 1``, whose
    noise variance is the posterior ``beta~`` of ``q(x_{t'} | x_t, x0)``."""
    return ddim(
        denoiser,
        x,
        grid,
        cond=cond,
        eta=1.0,
        generator=generator,
        callback=callback,
        progress=progress,
    )
