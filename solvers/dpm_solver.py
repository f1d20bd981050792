"""DPM-Solver (Lu et al. 2022a) in noise prediction: singlestep 1-3, -fast, adaptive, multistep.

Exact step in noise form, ``h = lam_t - lam_s`` (Eq. 3.7 of the paper)::

    y_t = (alpha_t/alpha_s) y_s - alpha_t int_{lam_s}^{lam_t} e^{-lam} eps_hat dlam

DPM-Solver-1: ``y_t = (alpha_t/alpha_s) y_s - sigma_t (e^h - 1) eps_s`` (= DDIM). Alg. 1
(DPM-Solver-2, ``r1``)::

    u   = (alpha_1/alpha_s) y_s - sigma_1 (e^{r1 h} - 1) eps_s
    y_t = (alpha_t/alpha_s) y_s - sigma_t (e^h - 1) eps_s
          - sigma_t (e^h - 1) (eps(u) - eps_s) / (2 r1)

Alg. 2 (DPM-Solver-3, ``r1 = 1/3, r2 = 2/3``)::

    u1  = (alpha_1/alpha_s) y_s - sigma_1 (e^{r1 h} - 1) eps_s
    u2  = (alpha_2/alpha_s) y_s - sigma_2 (e^{r2 h} - 1) eps_s
          - sigma_2 (r2/r1) ((e^{r2 h} - 1)/(r2 h) - 1) (eps(u1) - eps_s)
    y_t = (alpha_t/alpha_s) y_s - sigma_t (e^h - 1) eps_s
          - (sigma_t/r2) ((e^h - 1)/h - 1) (eps(u2) - eps_s)

Steps to ``t = 0`` and steps from ``alpha = 0`` are first order in data form (the denoiser's
estimate, or the DDIM map), which is exact there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import Point, Sched, ddim_step, eps_of, phi, prepare, report, steps
from ._expint import exp_multistep

__all__ = [
    "dpm_solver",
    "dpm_solver_adaptive",
    "dpm_solver_fast",
    "dpmsolver_multistep",
    "fast_orders",
]


def _first(y: Tensor, eps: Tensor, ps: Point, pt: Point) -> Tensor:
    return y * (pt.alpha / ps.alpha) - eps * (pt.sigma * math.expm1(pt.lam - ps.lam))


def _t_of_lam(s: Sched, lam: float) -> float:
    return float(s.process.t_of_log_snr(torch.tensor(2.0 * lam, dtype=torch.float64)))


class _Single:
    """Singlestep DPM-Solver updates from ``ps`` to ``pt``, sharing evaluations (for the adaptive
    pairs). ``mids`` are the intermediate points (grid points or points at ``lam_s + r h``)."""

    def __init__(self, model, s: Sched, y: Tensor, eps_s: Tensor, ps: Point, pt: Point):
        self.model, self.s, self.y, self.eps_s, self.ps, self.pt = model, s, y, eps_s, ps, pt
        self.h = pt.lam - ps.lam
        self._eps: dict[float, Tensor] = {}

    def mid(self, r: float) -> Point:
        return self.s.at(_t_of_lam(self.s, self.ps.lam + r * self.h))

    def eps_at(self, p: Point, u: Tensor) -> Tensor:
        if p.t not in self._eps:
            self._eps[p.t] = eps_of(u, self.model.at_time(u, p.t), p)
        return self._eps[p.t]

    def second(self, p1: Point) -> Tensor:
        y, e0, ps, pt = self.y, self.eps_s, self.ps, self.pt
        r1 = (p1.lam - ps.lam) / self.h
        e1 = self.eps_at(p1, _first(y, e0, ps, p1))
        return _first(y, e0, ps, pt) - (e1 - e0) * (pt.sigma * math.expm1(self.h) * 0.5 / r1)

    def third(self, p1: Point, p2: Point) -> Tensor:
        y, e0, ps, pt = self.y, self.eps_s, self.ps, self.pt
        h1, h2 = p1.lam - ps.lam, p2.lam - ps.lam
        r1, r2 = h1 / self.h, h2 / self.h
        e1 = self.eps_at(p1, _first(y, e0, ps, p1))
        u2 = _first(y, e0, ps, p2) - (e1 - e0) * (p2.sigma * (r2 / r1) * h2 * phi(2, h2))
        e2 = self.eps_at(p2, u2)
        return _first(y, e0, ps, pt) - (e2 - e0) * (pt.sigma * self.h * phi(2, self.h) / r2)


def _single_step(model, s: Sched, y: Tensor, d: Tensor, ps: Point, pt: Point, mids: list[Point]):
    """Order ``len(mids) + 1`` singlestep step; first order when it must be."""
    if not mids or pt.sigma == 0 or not math.isfinite(ps.lam):
        return ddim_step(y, d, ps, pt)
    step = _Single(model, s, y, eps_of(y, d, ps), ps, pt)
    return step.second(mids[0]) if len(mids) == 1 else step.third(mids[0], mids[1])


def dpm_solver(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 3,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """Singlestep DPM-Solver-``order`` (1, 2 or 3): every grid interval is one step with its
    intermediate points at ``r1 = 1/2`` (order 2) or ``r = 1/3, 2/3`` (order 3) in ``lam``.

    ``order`` NFE per step (one for a final step to ``t = 0``); global order ``order``.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"dpm_solver order must be 1, 2 or 3; got {order}")
    y, model, s = prepare(denoiser, x, grid, cond, name=f"dpm_solver_{order}")
    rs = {1: [], 2: [0.5], 3: [1 / 3, 2 / 3]}[order]
    for i in steps(len(s) - 1, progress, f"dpm_solver_{order}"):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        mids = []
        if pt.sigma > 0 and math.isfinite(ps.lam):
            mids = [s.at(_t_of_lam(s, ps.lam + r * (pt.lam - ps.lam))) for r in rs]
        y = _single_step(model, s, y, d, ps, pt, mids)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def fast_orders(m: int, order: int = 3) -> list[int]:
    """Step orders of DPM-Solver-fast for ``m`` model calls (Lu et al. 2022a, Sec. 3.4).

    ``order = 3``: ``K = m // 3 + 1`` steps of orders ``[3, ..., 3, 2, 1]`` (``m % 3 == 0``),
    ``[3, ..., 3, 1]`` (``== 1``) or ``[3, ..., 3, 2]`` (``== 2``); they sum to ``m``.
    """
    if m < 1:
        return []
    if order == 3:
        k = m // 3 + 1
        tail = {0: [2, 1], 1: [1], 2: [2]}[m % 3]
        return [3] * (k - len(tail)) + tail
    if order == 2:
        return [2] * (m // 2) + [1] * (m % 2)
    if order == 1:
        return [1] * m
    raise ValueError(f"DPM-Solver-fast order must be 1, 2 or 3; got {order}")


def dpm_solver_fast(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 3,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver-fast: the grid's ``m`` positive-time intervals are ``m`` model calls, spent on
    singlestep steps of orders :func:`fast_orders` whose intermediate points are the grid's own
    points (as dpm-solver does for non-logSNR grids; on a log-SNR grid they sit at ``r = 1/3, 2/3``,
    the third-order choice). A final step to ``t = 0`` costs one more call. NFE = ``len(grid) - 1``.
    """
    y, model, s = prepare(denoiser, x, grid, cond, name="dpm_solver_fast")
    n = len(s) - 1
    m = n - 1 if s[n].sigma == 0 else n
    bounds = [0]
    for k in fast_orders(m, order):
        bounds.append(bounds[-1] + k)
    if m < n:
        bounds.append(n)
    for j in steps(len(bounds) - 1, progress, "dpm_solver_fast"):
        a, b = bounds[j], bounds[j + 1]
        ps, pt = s[a], s[b]
        d = model(y, a)
        mids = [s[k] for k in range(a + 1, b)] if math.isfinite(ps.lam) else []
        y = _single_step(model, s, y, d, ps, pt, mids)
        report(callback, i=j, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def dpm_solver_adaptive(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    theta: float = 0.9,
    max_nfe: int = 10_000,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """Adaptive DPM-Solver-12 (``order=2``) or -23 (``order=3``), Lu et al. (2022a), Alg. 4.

    Only the grid's ends are used: from ``grid[0]`` to its last positive time (then one call for a
    final ``t = 0``); steps are chosen in ``lam`` by the embedded lower/higher-order pair with
    ``E = max_batch RMS((y_hi - y_lo) / max(atol, rtol max(|y_lo|, |y_prev|)))``, accepted when
    ``E <= 1``, next ``h = min(theta h E^{-1/order}, lam_end - lam_s)``. Differences from the
    reference code: the error is measured on the variance-preserving scale ``y / sqrt(alpha^2 +
    sigma^2)`` (identical for VP processes; makes the paper's ``atol`` meaningful for VE), the
    last step lands exactly on ``lam_end`` (no ``t_err``), and a rejected step reuses ``eps_s``.
    """
    if order not in (2, 3):
        raise ValueError(f"dpm_solver_adaptive order must be 2 or 3; got {order}")
    y, model, s = prepare(denoiser, x, grid, cond, name="dpm_solver_adaptive")
    n = len(s) - 1
    end = n - 1 if s[n].sigma == 0 else n
    ps, p_end = s[0], s[end]
    if not math.isfinite(ps.lam):
        raise ValueError(
            "dpm_solver_adaptive needs a finite log-SNR at grid[0] (alpha > 0); start the grid"
            f" below t = {ps.t}"
        )
    h, y_prev, scale_prev = h_init, y, 1 / math.hypot(ps.alpha, ps.sigma)
    step, d, eps_s = 0, None, None
    while end > 0 and ps.lam < p_end.lam:
        if model.nfe > max_nfe:
            raise RuntimeError(
                f"dpm_solver_adaptive used more than max_nfe={max_nfe} model calls; loosen rtol"
                f" (={rtol}) / atol (={atol}) or raise max_nfe"
            )
        if d is None:
            d = model.at_time(y, ps.t)
            eps_s = eps_of(y, d, ps)
        h = min(h, p_end.lam - ps.lam)
        pt = p_end if h >= p_end.lam - ps.lam else s.at(_t_of_lam(s, ps.lam + h))
        single = _Single(model, s, y, eps_s, ps, pt)
        if order == 2:
            y_lo = _first(y, eps_s, ps, pt)
            y_hi = single.second(single.mid(0.5))
        else:
            p1, p2 = single.mid(1 / 3), single.mid(2 / 3)
            y_lo = single.second(p1)
            y_hi = single.third(p1, p2)
        scale = 1 / math.hypot(pt.alpha, pt.sigma)
        delta = torch.maximum(
            torch.maximum((y_lo * scale).abs(), (y_prev * scale_prev).abs()) * rtol,
            torch.full_like(y_lo, atol),
        )
        err = ((y_hi - y_lo) * scale / delta).reshape(y.shape[0], -1).pow(2).mean(1).sqrt()
        E = max(float(err.max()), 1e-12)
        if E <= 1.0:
            report(callback, i=step, t=ps.t, t_next=pt.t, x=model.output(y_hi), x0=model.output(d))
            y_prev, scale_prev, y, ps, d = y_lo, scale, y_hi, pt, None
            step += 1
        h = theta * h * E ** (-1.0 / order)
    if end < n:
        d = model(y, end)
        y = ddim_step(y, d, s[end], s[n])
        report(callback, i=step, t=s[end].t, t_next=s[n].t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def dpmsolver_multistep(
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
    """Multistep DPM-Solver in noise prediction (Lu et al. 2022b, App. B; diffusers
    ``algorithm_type="dpmsolver"``), orders 1-3, one model call per step.

    ``variant="paper"``: 2M ``y_t = (alpha_t/alpha_s) y - sigma_t (e^h - 1) (eps_0 + D1_0 / 2)``
    (the "midpoint" type) and the shipped 3M, whose ``D2`` is half the Taylor term (order 2, as
    for :func:`dpmpp_3m`). ``variant="exact"``: the exact integral of the Lagrange interpolant of
    the last ``order`` noise estimates in ``lam`` (= DEIS in ``log rho`` with ``r = order - 1``).
    """
    return exp_multistep(
        denoiser,
        x,
        grid,
        name=f"dpmsolver_{order}m",
        order=order,
        kind="noise",
        variant=variant,
        lower_order_final=lower_order_final,
        cond=cond,
        callback=callback,
        progress=progress,
    )
