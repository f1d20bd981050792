"""Stochastic samplers: Euler-Maruyama, SDE-DPM-Solver++(2M), noise-prediction SDE-DPM-Solver and
the stochastic-interpolant SDE with a tunable diffusion ``w(t)``.

All take ``generator`` = one ``torch.Generator`` or one per sample
(:func:`sciffusion.solvers.per_sample_generators`): with per-sample generators a sample does not
change with the batch it runs in. A step to ``t = 0`` returns the estimate ``D`` (no noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._common import (
    Point,
    eps_of,
    noise_like,
    prepare,
    report,
    step_order,
    steps,
)
from .flow import _derivs, velocity

__all__ = ["SI_DIFFUSIONS", "euler_maruyama", "sde_dpmpp_2m", "sde_dpmsolver", "si_sde"]


def _ancestral(y: Tensor, d: Tensor, ps: Point, pt: Point, generator) -> Tensor:
    """DDPM posterior step (DDIM ``eta = 1``): the fallback for steps starting at ``alpha = 0``."""
    if pt.sigma == 0:
        return d * pt.alpha
    var = pt.sigma**2 * -math.expm1(2 * (ps.lam - pt.lam))
    mean = d * pt.alpha + eps_of(y, d, ps) * math.sqrt(max(pt.sigma**2 - var, 0.0))
    return mean + noise_like(y, generator) * math.sqrt(var)


def euler_maruyama(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """Euler-Maruyama on the reverse SDE (Song et al. 2021, Eq. 6) in the VE frame.

    With ``x~ = y / alpha`` and ``s = sigma / alpha`` the reverse SDE is
    ``dx~ = -2 s ds grad log p + sqrt(2 s |ds|) dW`` and ``grad log p = (D - x~) / s^2``::

        x~' = x~ + 2 (s - s') / s (D - x~) + sqrt(2 s (s - s')) z

    (strong order 1/2, weak order 1). A step from ``alpha = 0`` is a DDPM step.
    """
    y, model, s = prepare(denoiser, x, grid, cond, name="euler_maruyama")
    for i in steps(len(s) - 1, progress, "euler_maruyama"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0 or ps.alpha == 0:
            y = _ancestral(y, d, ps, pt, generator)
        else:
            rs, rt = ps.sigma / ps.alpha, pt.sigma / pt.alpha
            xt = y / ps.alpha
            xt = (
                xt
                + (d - xt) * (2 * (rs - rt) / rs)
                + noise_like(y, generator) * math.sqrt(2 * rs * (rs - rt))
            )
            y = xt * pt.alpha
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def sde_dpmpp_2m(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 2,
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress=False,
) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, App. E; diffusers ``sde-dpmsolver++``, eta = 1)::

        y_t = (sigma_t/sigma_s) e^{-h} y + alpha_t (1 - e^{-2h}) D_0
              + alpha_t (1 - e^{-2h}) (D_0 - D_1) / (2 r) + sigma_t sqrt(1 - e^{-2h}) z

    with ``r = h_{i-1} / h`` (the second-order term is dropped for ``order = 1`` and on warm-up).
    """
    if order not in (1, 2):
        raise ValueError(f"sde_dpmpp_2m order must be 1 or 2; got {order}")
    y, model, s = prepare(denoiser, x, grid, cond, name="sde_dpmpp_2m")
    n = len(s) - 1
    prev: tuple[float, Tensor] | None = None
    for i in steps(n, progress, "sde_dpmpp_2m"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0:
            y = d * pt.alpha
        else:
            h = pt.lam - ps.lam
            one_m = -math.expm1(-2 * h)  # 1 - e^{-2h}
            d_eff = d
            k = step_order(
                i, n, order, history=2 if prev else 1, lower_order_final=lower_order_final
            )
            if k == 2 and prev is not None:
                r = (ps.lam - prev[0]) / h
                d_eff = d + (d - prev[1]) * (0.5 / r)
            y = (
                y * (pt.sigma / ps.sigma * math.exp(-h))
                + d_eff * (pt.alpha * one_m)
                + noise_like(y, generator) * (pt.sigma * math.sqrt(one_m))
            )
        prev = (ps.lam, d) if math.isfinite(ps.lam) else None
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def sde_dpmsolver(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 1,
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress=False,
) -> Tensor:
    """SDE-DPM-Solver in noise prediction, first or second order (diffusers ``sde-dpmsolver``;
    the MaRS sampler of mean-reverting models uses it)::

        y_t = (alpha_t/alpha_s) y - 2 sigma_t (e^h - 1) eps_0
              - sigma_t (e^h - 1) (eps_0 - eps_1) / r
              + sigma_t sqrt(e^{2h} - 1) z

    (the ``eps_0 - eps_1`` term only for ``order = 2``). From ``alpha = 0`` the map is unbounded:
    such a step is a DDPM step.
    """
    if order not in (1, 2):
        raise ValueError(f"sde_dpmsolver order must be 1 or 2; got {order}")
    name = f"sde_dpmsolver_{order}"
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    n = len(s) - 1
    prev: tuple[float, Tensor] | None = None
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0 or ps.alpha == 0:
            y = _ancestral(y, d, ps, pt, generator)
            prev = None
        else:
            h = pt.lam - ps.lam
            e = eps_of(y, d, ps)
            em1 = math.expm1(h)
            y_new = y * (pt.alpha / ps.alpha) - e * (2 * pt.sigma * em1)
            k = step_order(
                i, n, order, history=2 if prev else 1, lower_order_final=lower_order_final
            )
            if k == 2 and prev is not None:
                r = (ps.lam - prev[0]) / h
                y_new = y_new - (e - prev[1]) * (pt.sigma * em1 / r)
            y = y_new + noise_like(y, generator) * (pt.sigma * math.sqrt(math.expm1(2 * h)))
            prev = (ps.lam, e)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def _w_sbdm(process, t: Tensor) -> Tensor:
    # g^2 / 2 of the diffusion whose marginals these are: sigma^2 d/dt log(sigma / alpha)
    a, s = process.alpha(t), process.sigma(t)
    return s * process.d_sigma(t) - s**2 * process.d_alpha(t) / a


SI_DIFFUSIONS: dict[str, Callable] = {
    "zero": lambda process, t: torch.zeros_like(t),
    "constant": lambda process, t: torch.ones_like(t),
    "sigma": lambda process, t: process.sigma(t),
    "linear": lambda process, t: t.clone(),
    "increasing-decreasing": lambda process, t: torch.sin(math.pi * t) ** 2,
    "sbdm": _w_sbdm,
}


def si_sde(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    w: str | Callable[[Tensor], Tensor] = "sigma",
    w_scale: float = 1.0,
    cond=None,
    generator=None,
    callback=None,
    progress=False,
) -> Tensor:
    """Stochastic-interpolant SDE (Albergo et al. 2023; SiT, Ma et al. 2024), EM in ``t``.

    Any ``w(t) >= 0`` gives an SDE with the interpolant's marginals. In the time of this library
    (``t = 0`` data, steps ``dt = t' - t < 0``) it reads::

        y' = y + [v - w(t) score] dt + sqrt(2 w(t) |dt|) z,   score = -eps_hat / sigma

    (SiT writes ``[v + w s] dt`` in a time that runs from noise to data). ``w`` is a name in
    ``SI_DIFFUSIONS`` (``zero`` = flow Euler, ``sigma`` = SiT's default, ``sbdm`` = the reverse
    diffusion SDE, ``constant``, ``linear``, ``increasing-decreasing``) or a callable of the time
    tensor; it is multiplied by ``w_scale`` (SiT's ``diffusion_norm``).
    """
    if w_scale < 0:
        raise ValueError(f"w_scale must be >= 0; got {w_scale}")
    if isinstance(w, str):
        if w not in SI_DIFFUSIONS:
            raise ValueError(f"unknown diffusion w={w!r}; choose one of {tuple(SI_DIFFUSIONS)}")
        named = SI_DIFFUSIONS[w]
        w_fn: Callable[[Tensor], Tensor] = lambda t: named(process, t)  # noqa: E731
    elif callable(w):
        w_fn = w
    else:
        raise TypeError(f"w must be a name in {tuple(SI_DIFFUSIONS)} or a callable; got {w!r}")
    y, model, s = prepare(denoiser, x, grid, cond, name="si_sde")
    process = s.process
    da, ds = _derivs(process, s.t)
    ws = [
        w_scale * float(w_fn(torch.tensor(p.t, dtype=torch.float64)))
        for p in (s[j] for j in range(len(s)))
    ]
    for i in steps(len(s) - 1, progress, "si_sde"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0:
            y = d * pt.alpha
        else:
            wi = ws[i]
            if not (math.isfinite(wi) and wi >= 0):
                raise ValueError(
                    f"w(t={ps.t:.6g}) = {wi}: the diffusion must be finite and >= 0 on the grid"
                    " (w='sbdm' is infinite where alpha = 0: start the grid below t = 1)"
                )
            dt = pt.t - ps.t
            eps = eps_of(y, d, ps)
            drift = velocity(y, d, ps, da[i], ds[i]) + eps * (wi / ps.sigma)
            y = y + drift * dt
            if wi > 0:
                y = y + noise_like(y, generator) * math.sqrt(2 * wi * -dt)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)
