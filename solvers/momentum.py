"""Momentum samplers (Wizadwongsa & Suwajanakorn 2024): heavy ball (HB), generalised heavy ball
(GHVB) and HB-DPM-Solver++(2M), against the divergence artifacts of low-NFE / high-guidance runs.

In the VE frame ``x~ = y / alpha``, ``rho = sigma / alpha`` the PF-ODE is ``dx~/drho = eps``; the
DDIM/PLMS family steps ``x~' = x~ + (rho' - rho) e`` with a direction ``e`` mixed from past noise
estimates. Momentum replaces ``e`` by a velocity (Sec. 4 of the paper)::

    HB  (PLMS-k):  v <- (1 - beta) v + beta AB_k(eps_n, ..., eps_{n-k+1});       e = v
    GHVB (k, beta): v_n = (1 - beta) v_{n-1} + beta eps_n;      e = sum_j c_j(beta) v_{n-j}

``AB_k`` are the constant-step Adams-Bashforth weights of PLMS. GHVB's ``c_j(beta)`` undo the
lag of the moving average: with the steady average ``v_n = beta sum_m (1 - beta)^m eps_{n-m}``
they make ``sum_j c_j v_{n-j}`` the mean of ``eps`` over the next step for every polynomial
``eps`` of degree < k (:func:`ghvb_coefficients`; ``beta = 1`` gives ``AB_k``). The paper names
GHVB by ``k - 1 + beta`` ("GHVB 1.5" = ``k = 2, beta = 0.5``). HB lags by ``O(h)`` and is first
order for ``beta < 1``. HB-DPM++(2M) averages the data-prediction direction ``D_0 + D1/2`` of
2M instead. ``beta = 1`` is the base solver exactly (PLMS-k with Adams-Bashforth warm-up; DDIM
for ``k = 1``; DPM-Solver++(2M)). A step to ``t = 0`` returns the denoiser's estimate.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ._common import ddim_step, eps_of, phi, prepare, report, step_order, steps

__all__ = ["ghvb", "ghvb_coefficients", "hb", "hb_dpmpp_2m"]


@functools.lru_cache(maxsize=64)
def ghvb_coefficients(k: int, beta: float) -> tuple[float, ...]:
    """Weights ``c_0..c_{k-1}`` of the velocities ``v_n, ..., v_{n-k+1}`` (float64).

    Solves ``sum_j c_j V_p(j) = 1 / (p + 1)`` for ``p = 0..k-1``, where
    ``V_p(j) = beta sum_m r^m (-(j + m))^p`` (``r = 1 - beta``) is the steady moving average of
    ``eps(m) = m^p`` at step ``-j`` and ``1/(p + 1) = int_0^1 s^p ds`` is the mean of ``eps``
    over the next step. The moments ``M_q = sum_m m^q r^m`` obey
    ``(1 - r) M_q = r sum_{i<q} C(q, i) M_i`` (``M_0 = 1 / (1 - r)``).
    """
    if k < 1:
        raise ValueError(f"the number of velocities k must be >= 1; got {k}")
    if not 0 < beta <= 1:
        raise ValueError(f"beta must lie in (0, 1]; got {beta}")
    r = 1.0 - beta
    M = [1.0 / (1.0 - r)]
    for q in range(1, k):
        M.append(r / (1.0 - r) * sum(math.comb(q, i) * M[i] for i in range(q)))
    A = torch.empty(k, k, dtype=torch.float64)
    for p in range(k):
        for j in range(k):
            moment = sum(math.comb(p, q) * float(j) ** (p - q) * M[q] for q in range(p + 1))
            A[p, j] = beta * (-1.0) ** p * moment
    target = torch.tensor([1.0 / (p + 1) for p in range(k)], dtype=torch.float64)
    return tuple(torch.linalg.solve(A, target).tolist())


def _check(order: int, beta: float, name: str) -> None:
    if order not in (1, 2, 3, 4):
        raise ValueError(
            f"{name}: order (the number of mixed estimates k) must be 1-4; got {order}"
        )
    if not 0 < beta <= 1:
        raise ValueError(
            f"{name}: beta must lie in (0, 1] (1 = no momentum, the base solver); got {beta}"
        )


def hb(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 2,
    beta: float = 0.8,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """Heavy-ball PLMS-``order``: ``v <- (1 - beta) v + beta AB_k(eps)``, ``x~' = x~ + drho v``.

    Parameters
    ----------
    order
        ``k``: Adams-Bashforth order of the mixed noise estimate (1 = DDIM), lower while warming up.
    beta
        Momentum in ``(0, 1]``; ``1`` is PLMS-``k`` (Alg. 1 of Wizadwongsa & Suwajanakorn 2024).
    """
    _check(order, beta, "hb")
    return _plms_momentum(denoiser, x, grid, order, beta, "hb", cond, callback, progress)


def ghvb(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 2,
    beta: float = 0.5,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """GHVB ``order - 1 + beta``: ``v_n = (1 - beta) v_{n-1} + beta eps_n``,
    ``x~' = x~ + drho sum_j c_j(beta) v_{n-j}`` (Eq. 14 of the paper; weights by
    :func:`ghvb_coefficients`). The default is GHVB 1.5."""
    _check(order, beta, "ghvb")
    return _plms_momentum(denoiser, x, grid, order, beta, "ghvb", cond, callback, progress)


def _plms_momentum(denoiser, x, grid, k, beta, name, cond, callback, progress) -> Tensor:
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    n = len(s) - 1
    hist: list[Tensor] = []  # eps (HB) or velocities (GHVB), most recent last
    vel: Tensor | None = None
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0 or ps.alpha == 0:
            y = ddim_step(y, d, ps, pt)  # the final jump / a start at alpha = 0: first order
            hist, vel = [], None
        else:
            e = eps_of(y, d, ps)
            if name == "hb":
                hist = [*hist, e][-k:]
                mixed = _mix(hist, ghvb_coefficients(len(hist), 1.0))
                vel = mixed if vel is None or beta == 1 else vel * (1 - beta) + mixed * beta
                direction = vel
            else:
                vel = e if vel is None or beta == 1 else vel * (1 - beta) + e * beta
                hist = [*hist, vel][-k:]
                direction = _mix(hist, ghvb_coefficients(len(hist), float(beta)))
            rs, rt = ps.sigma / ps.alpha, pt.sigma / pt.alpha
            y = (y / ps.alpha + direction * (rt - rs)) * pt.alpha
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def _mix(hist: list[Tensor], coef: tuple[float, ...]) -> Tensor:
    """``sum_j coef_j hist[-1 - j]`` (most recent first)."""
    out = hist[-1] * coef[0]
    for c, v in zip(coef[1:], hist[-2::-1], strict=True):
        out = out + v * c
    return out


def hb_dpmpp_2m(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    beta: float = 0.8,
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) with heavy-ball momentum on its direction (Wizadwongsa & Suwajanakorn
    2024, Sec. 4.3)::

        v <- (1 - beta) v + beta (D_0 + (D_0 - D_1) / (2 r)),   r = h_{i-1} / h_i
        y_t = (sigma_t / sigma_s) y_s - alpha_t (e^{-h} - 1) v

    First-order steps (warm-up, ``lower_order_final``, the jump to ``t = 0``) are plain
    DPM-Solver++(1) steps. ``beta = 1`` is DPM-Solver++(2M).
    """
    _check(2, beta, "hb_dpmpp_2m")
    y, model, s = prepare(denoiser, x, grid, cond, name="hb_dpmpp_2m")
    n = len(s) - 1
    hist: list[tuple[float, Tensor]] = []
    vel: Tensor | None = None
    for i in steps(n, progress, "hb_dpmpp_2m"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if math.isfinite(ps.lam):
            hist = [*hist, (ps.lam, d)][-2:]
        else:
            hist, vel = [], None
        k = step_order(i, n, 2, history=len(hist), lower_order_final=lower_order_final)
        if k == 1 or pt.sigma == 0:
            y = ddim_step(y, d, ps, pt)
        else:
            h = pt.lam - ps.lam
            (lam1, m1), (lam0, m0) = hist
            direction = m0 + (m0 - m1) / ((lam0 - lam1) / h) * 0.5
            vel = direction if vel is None or beta == 1 else vel * (1 - beta) + direction * beta
            y = y * (pt.sigma / ps.sigma) + vel * (pt.alpha * h * phi(1, -h))
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)
