"""DPM-Solver++ (Lu et al. 2022b): data prediction on the half log-SNR ``lam = log(alpha/sigma)``.

First order: ``y_t = (sigma_t/sigma_s) y_s - alpha_t (e^{-h} - 1) D_s`` (= DDIM).

2M (Alg. 2): ``D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}``, ``r = h_{i-1} / h_i``, in the same formula.

3M (as shipped by dpm-solver, diffusers and k-diffusion)::

    D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1),   D2 = (D1_0 - D1_1) / (r0 + r1)
    y_t = (sigma_t/sigma_s) y - alpha_t phi1 D_0 + alpha_t phi2 D1 - alpha_t phi3 D2

with ``D1_k = (D_k - D_{k+1}) / r_k``, ``phi1 = e^{-h} - 1``, ``phi2 = phi1/h + 1``,
``phi3 = phi2/h - 1/2``. ``D2 ~ h^2 D''/2``, but the Taylor term multiplying ``phi3`` needs
``h^2 D''``: the shipped 3M is only second order (docs/notes 02). ``variant="exact"`` integrates the
quadratic interpolant exactly (equivalently, doubles ``D2``) and is third order.

2S: the singlestep second-order solver with the midpoint ``r1 = 1/2`` in ``lam`` (2 NFE/step).
"""

from __future__ import annotations

import math

from torch import Tensor

from ._common import ddim_step, prepare, report, steps
from ._expint import exp_multistep

__all__ = ["dpmpp_2m", "dpmpp_2s", "dpmpp_3m", "dpmpp_multistep"]


def dpmpp_multistep(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 2,
    variant: str = "paper",
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++ multistep of ``order`` 1-3 (``variant="exact"``: Lagrange-exact, also 4).

    Parameters
    ----------
    denoiser
        ``D(x, t, cond) -> x0_hat`` with a Gaussian ``process``.
    x
        Start sample ``(B, *event)`` at ``grid[0]``.
    grid
        Descending times (float64), e.g. ``make_grid(process, n)``.
    order, variant
        ``paper`` = the formulas above (the 3M only second order); ``exact`` = the exact integral
        of the Lagrange interpolant through the last ``order`` outputs (order ``order``).
    lower_order_final
        Orders ``min(order, n - i)`` on the last steps of grids shorter than 15 steps.
    """
    return exp_multistep(
        denoiser,
        x,
        grid,
        name=f"dpmpp_{order}m",
        order=order,
        kind="data",
        variant=variant,
        lower_order_final=lower_order_final,
        cond=cond,
        callback=callback,
        progress=progress,
    )


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
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2). ``lower_order_final`` uses a first-order last
    step when the grid is shorter than 15 steps (diffusers' default); a step to ``t = 0`` is always
    first order (the denoiser's estimate)."""
    return dpmpp_multistep(
        denoiser,
        x,
        grid,
        order=2,
        variant="paper",
        lower_order_final=lower_order_final,
        cond=cond,
        callback=callback,
        progress=progress,
    )


def dpmpp_3m(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    variant: str = "paper",
    cond=None,
    lower_order_final: bool = True,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(3M). ``variant="paper"``: as shipped by dpm-solver/diffusers/k-diffusion
    (measured global order 2: the ``D2`` term is half the Taylor term); ``"exact"``: third order."""
    return dpmpp_multistep(
        denoiser,
        x,
        grid,
        order=3,
        variant=variant,
        lower_order_final=lower_order_final,
        cond=cond,
        callback=callback,
        progress=progress,
    )


def dpmpp_2s(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    r1: float = 0.5,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2S): singlestep, intermediate point at ``lam_s + r1 h`` (2 NFE/step).

    ``u = (sigma_1/sigma_s) y - alpha_1 (e^{-r1 h} - 1) D_s`` and
    ``y_t = (sigma_t/sigma_s) y - alpha_t (e^{-h} - 1) [D_s + (D(u) - D_s) / (2 r1)]``
    (Lu et al. 2022b, Alg. 1). Steps to ``t = 0`` or from ``alpha = 0`` are first order.
    """
    if not 0 < r1 < 1:
        raise ValueError(f"r1 must lie in (0, 1); got {r1}")
    y, model, s = prepare(denoiser, x, grid, cond, name="dpmpp_2s")
    for i in steps(len(s) - 1, progress, "dpmpp_2s"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0 or not math.isfinite(ps.lam):
            y = ddim_step(y, d, ps, pt)
        else:
            h = pt.lam - ps.lam
            p1 = s.at(float(s.process.t_of_log_snr(2 * (ps.lam + r1 * h))))
            u = ddim_step(y, d, ps, p1)
            d1 = model.at_time(u, p1.t)
            d_eff = d + (d1 - d) * (0.5 / r1)
            y = y * (pt.sigma / ps.sigma) - d_eff * (pt.alpha * math.expm1(-h))
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)
