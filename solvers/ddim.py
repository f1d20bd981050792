"""DDIM (Song, Meng & Ermon 2021) and DDPM ancestral sampling on any Gaussian process."""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import c, noise_like, prepare, report, steps

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

    ``x' = alpha' D + sqrt(sigma'^2 - c^2) eps_hat + c z`` with ``eps_hat = (x - alpha D) / sigma`` and
    ``c = eta sigma' sqrt(1 - e^{-2h})``, ``h = lam' - lam``. ``eta = 0`` is the deterministic
    first-order solver (= DPM-Solver(++)-1 = Euler in ``sigma/alpha``); ``eta = 1`` is DDPM
    ancestral sampling on the grid.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0; got {eta}")
    y, model, s = prepare(denoiser, x, grid, cond, name="ddim")
    for i in steps(len(s) - 1, progress, "ddim"):
        d = model(y, i)
        a_n, s_n = s.alpha[i + 1], s.sigma[i + 1]
        if float(s_n) == 0:
            y = d
        else:
            eps = (y - c(s.alpha[i], y) * d) / c(s.sigma[i], y)
            noise_std = eta * s_n * torch.sqrt(-torch.expm1(-2 * (s.lam[i + 1] - s.lam[i])))
            noise_std = torch.clamp(noise_std, max=s_n)
            y = c(a_n, y) * d + c(torch.sqrt(s_n**2 - noise_std**2), y) * eps
            if eta > 0:
                y = y + c(noise_std, y) * noise_like(y, generator)
        report(
            callback,
            i=i,
            t=float(s.t[i]),
            t_next=float(s.t[i + 1]),
            x=model.output(y),
            x0=model.output(d),
        )
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
