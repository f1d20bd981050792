"""DEIS (Zhang & Chen 2023): exponential integrators with polynomial extrapolation of ``eps``.

In the VE frame ``x~ = y / alpha``, ``rho = sigma / alpha`` the PF-ODE is ``d x~ / d rho = eps_hat``
(Eq. 11 of the paper with ``Psi`` absorbed), so a step is ``x~_t = x~_s + int eps d rho``. DEIS
replaces ``eps`` by the Lagrange polynomial through the last ``r + 1`` estimates, in

- ``variant="t"`` (tAB-DEIS): time ``t``; ``int l_j(t(rho)) d rho`` by Gauss-Legendre in ``rho``;
- ``variant="rho"`` (rhoAB-DEIS): ``rho`` itself; ``int l_j(rho) d rho`` exactly;
- ``variant="logrho"`` (diffusers' default): ``log rho = -lam``; the integral is the exponential
  one of :mod:`._expint`, exact (``= dpmsolver_multistep(order=r+1, variant="exact")``).

``r`` is the paper's polynomial order (``r + 1`` points, global order ``r + 1``); diffusers'
``solver_order = k`` is ``r = k - 1``. ``r = 0`` is DDIM. Warm-up steps use the points available.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import ddim_step, eps_of, prepare, report, step_order, steps
from ._expint import (
    combine,
    exp_multistep,
    gauss_legendre,
    lagrange_monomials,
    polynomial_integral_weights,
)

__all__ = ["DEIS_VARIANTS", "deis"]

DEIS_VARIANTS = ("t", "rho", "logrho")


def deis(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    r: int = 2,
    variant: str = "logrho",
    lower_order_final: bool = True,
    quadrature_nodes: int = 16,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DEIS with polynomial order ``r`` (0-3) in the variable ``variant`` (``DEIS_VARIANTS``).

    Parameters
    ----------
    r
        Extrapolation order: ``eps`` is interpolated through the last ``r + 1`` grid points.
    variant
        ``t`` (tAB), ``rho`` (rhoAB) or ``logrho`` (exponential in ``lam``).
    lower_order_final
        Lower order on the last steps of grids shorter than 15 steps.
    quadrature_nodes
        Gauss-Legendre nodes per step for ``variant="t"`` (exact for the other variants).
    """
    if r not in (0, 1, 2, 3):
        raise ValueError(f"DEIS polynomial order r must be 0, 1, 2 or 3; got {r}")
    if variant not in DEIS_VARIANTS:
        raise ValueError(f"unknown DEIS variant {variant!r}; choose one of {DEIS_VARIANTS}")
    name = f"deis_{variant}_{r}"
    if variant == "logrho":
        return exp_multistep(
            denoiser,
            x,
            grid,
            name=name,
            order=r + 1,
            kind="noise",
            variant="exact",
            lower_order_final=lower_order_final,
            cond=cond,
            callback=callback,
            progress=progress,
        )
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    process = s.process
    n = len(s) - 1
    hist: list[tuple[float, float, Tensor]] = []  # (t, rho, eps)
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if ps.alpha > 0:
            hist = [*hist, (ps.t, ps.sigma / ps.alpha, eps_of(y, d, ps))][-(r + 1) :]
        else:
            hist = []
        k = step_order(i, n, r + 1, history=len(hist), lower_order_final=lower_order_final)
        if k == 1 or pt.sigma == 0 or not hist:
            y = ddim_step(y, d, ps, pt)
        else:
            pts = hist[-k:][::-1]  # most recent first
            rho_s, rho_t = ps.sigma / ps.alpha, pt.sigma / pt.alpha
            if variant == "rho":
                w = polynomial_integral_weights([p[1] for p in pts], rho_s, rho_t)
            else:
                w = _t_weights(
                    process, [p[0] for p in pts], ps.t, pt.t, rho_s, rho_t, quadrature_nodes
                )
            x_t = y / ps.alpha + combine([p[2] for p in pts], w)
            y = x_t * pt.alpha
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def _t_weights(
    process, ts: list[float], t_s: float, t_t: float, rho_s: float, rho_t: float, q: int
) -> list[float]:
    """``w_j = int_{rho_s}^{rho_t} l_j(t(rho)) d rho`` (Lagrange basis in ``t``), Gauss-Legendre."""
    nodes, weights = gauss_legendre(q, rho_s, rho_t)
    t_nodes = process.t_of_log_snr(-2.0 * torch.log(nodes)).to(torch.float64)
    span = t_t - t_s
    C = lagrange_monomials([(t - t_s) / span for t in ts])
    u = (t_nodes - t_s) / span
    powers = u[None, :] ** torch.arange(C.shape[1], dtype=torch.float64)[:, None]  # (k, q)
    return ((C @ powers) @ weights).tolist()
