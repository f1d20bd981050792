"""Exponential-integrator coefficients shared by the multistep solvers (DPM-Solver(++), DEIS).

The exact PF-ODE step from ``s`` to ``t`` in half log-SNR ``lam`` (``h = lam_t - lam_s``) reads,
in data and in noise prediction (Lu et al. 2022a, Eq. 3.4; 2022b, Eq. 8)::

    y_t = (sigma_t / sigma_s) y_s + sigma_t int_{lam_s}^{lam_t} e^{lam} D(lam) dlam
    y_t = (alpha_t / alpha_s) y_s - alpha_t int_{lam_s}^{lam_t} e^{-lam} eps(lam) dlam

With the Taylor expansion of ``D`` (or ``eps``) around ``lam_s`` each term integrates in closed
form: ``int (lam - lam_s)^k / k! e^{...}`` gives ``h^{k+1} phi_{k+1}(-h)`` (data, times
``alpha_t``) and ``h^{k+1} phi_{k+1}(h)`` (noise, times ``-sigma_t``). Replacing ``D`` by the
Lagrange polynomial through past outputs and integrating it *exactly* gives the weights of
:func:`lagrange_weights`: DEIS (Zhang & Chen 2023) in ``log rho = -lam``, and the "exact"
variants of the DPM-Solver multistep methods. Part 2 of the solver suite (DPM-Solver-v3,
DC-Solver, momentum) builds on these helpers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import ddim_step, eps_of, phi, prepare, report, step_order, steps

__all__ = [
    "combine",
    "exp_multistep",
    "gauss_legendre",
    "lagrange_monomials",
    "lagrange_weights",
    "polynomial_integral_weights",
]


def lagrange_monomials(nodes: Sequence[float]) -> Tensor:
    """Monomial coefficients of the Lagrange basis: ``l_j(v) = sum_k C[j, k] v^k`` (float64).

    ``nodes`` are the (normalised, O(1)) abscissae; ``C`` is the inverse of the Vandermonde
    matrix ``V[j, k] = v_j^k``.
    """
    v = torch.tensor(list(nodes), dtype=torch.float64)
    m = v.numel()
    vander = v[:, None] ** torch.arange(m, dtype=torch.float64)[None, :]
    # V @ C^T = I  <=>  l_j(v_i) = delta_ij
    return torch.linalg.inv(vander).mT.contiguous()


def lagrange_weights(
    lams: Sequence[float], lam_s: float, lam_t: float, *, kind: str
) -> list[float]:
    """Weights ``w_j`` of the exact integral of the Lagrange interpolant through ``(lams_j, f_j)``.

    ``kind="data"``: ``sigma_t int e^{lam} P(lam) dlam = alpha_t sum_j w_j f_j`` (``f = D``);
    ``kind="noise"``: ``alpha_t int e^{-lam} P(lam) dlam = sigma_t sum_j w_j f_j`` (``f = eps``).
    With ``v = (lam - lam_s) / h`` and ``l_j(v) = sum_k C_jk v^k``, each monomial integrates to
    ``k! h phi_{k+1}(-+h)``, so ``w_j = sum_k C_jk k! h phi_{k+1}(-+h)``.
    """
    h = lam_t - lam_s
    z = -h if kind == "data" else h
    C = lagrange_monomials([(lam - lam_s) / h for lam in lams])
    base = torch.tensor(
        [math.factorial(k) * h * phi(k + 1, z) for k in range(C.shape[1])], dtype=torch.float64
    )
    return (C @ base).tolist()


def polynomial_integral_weights(nodes: Sequence[float], a: float, b: float) -> list[float]:
    """Weights ``w_j = int_a^b l_j(u) du`` of the Lagrange basis through ``nodes`` (exact)."""
    span = b - a
    C = lagrange_monomials([(u - a) / span for u in nodes])
    base = torch.tensor([span / (k + 1) for k in range(C.shape[1])], dtype=torch.float64)
    return (C @ base).tolist()


@functools.lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[Tensor, Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(x), torch.from_numpy(w)


def gauss_legendre(n: int, a: float, b: float) -> tuple[Tensor, Tensor]:
    """``n``-point Gauss-Legendre nodes and weights on ``[a, b]`` (float64)."""
    x, w = _legendre(n)
    half = 0.5 * (b - a)
    return a + half * (x + 1.0), half * w


def combine(values: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """``sum_j w_j values_j`` (weights are python floats)."""
    out = values[0] * weights[0]
    for v, w in zip(values[1:], weights[1:], strict=True):
        out = out + v * w
    return out


# -- the multistep driver -----------------------------------------------------------------------


def exp_multistep(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    name: str,
    order: int,
    kind: str,
    variant: str,
    lower_order_final: bool,
    cond,
    callback,
    progress: bool,
) -> Tensor:
    """Multistep exponential integrator on past ``D`` (``kind="data"``) or ``eps`` (``"noise"``).

    One model call per step. ``variant="paper"`` is the Taylor form of DPM-Solver(++) as shipped
    (orders 2, 3); ``variant="exact"`` integrates the Lagrange interpolant of the last ``order``
    outputs exactly (:func:`lagrange_weights`). Steps to ``sigma = 0`` and steps without enough
    finite-``lam`` history are first order (DDIM).
    """
    if order not in (1, 2, 3, 4):
        raise ValueError(f"{name}: order must be 1, 2, 3 (or 4 for exact); got {order}")
    if variant not in ("paper", "exact"):
        raise ValueError(f"{name}: variant must be 'paper' or 'exact'; got {variant!r}")
    if variant == "paper" and order > 3:
        raise ValueError(f"{name}: the paper variant has orders 1-3; use variant='exact'")
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    n = len(s) - 1
    hist: list[tuple[float, Tensor]] = []  # (lam, D or eps), most recent last
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if math.isfinite(ps.lam):
            hist.append((ps.lam, d if kind == "data" else eps_of(y, d, ps)))
            hist = hist[-order:]
        else:
            hist = []
        k = step_order(i, n, order, history=len(hist), lower_order_final=lower_order_final)
        if k == 1 or pt.sigma == 0 or not hist:
            y = ddim_step(y, d, ps, pt)
        else:
            y = _exp_update(y, hist[-k:], ps, pt, kind=kind, variant=variant)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def _exp_update(y: Tensor, hist, ps, pt, *, kind: str, variant: str) -> Tensor:
    """One multistep step of order ``len(hist)`` >= 2 from ``ps`` to ``pt`` (finite ``lam``)."""
    h = pt.lam - ps.lam
    lams = [lam for lam, _ in hist][::-1]  # most recent first: lams[0] = lam_s
    vals = [v for _, v in hist][::-1]
    if kind == "data":
        base = y * (pt.sigma / ps.sigma)
        scale, z = pt.alpha, -h  # y_t = base + alpha_t * sum(...)
    else:
        base = y * (pt.alpha / ps.alpha)
        scale, z = -pt.sigma, h  # y_t = base - sigma_t * sum(...)
    if variant == "exact":
        w = lagrange_weights(lams, ps.lam, pt.lam, kind=kind)
        return base + combine(vals, w) * scale
    # Taylor form with divided differences (Lu et al. 2022b, Alg. 2 and the 3M of their code)
    m0, m1 = vals[0], vals[1]
    r0 = (lams[0] - lams[1]) / h
    d1_0 = (m0 - m1) / r0  # ~ h D'
    c1, c2, c3 = (h * phi(k, z) for k in (1, 2, 3))  # h phi_k(-+h)
    if len(vals) == 2:
        # 2M: D' ~ 0.5 * d1_0 integrated with phi_1 (the "midpoint"/dpmsolver type)
        return base + (m0 * c1 + d1_0 * (0.5 * c1)) * scale
    m2 = vals[2]
    r1 = (lams[1] - lams[2]) / h
    d1_1 = (m1 - m2) / r1
    d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))  # h D'(lam_s) of the quadratic interpolant
    d2 = (d1_0 - d1_1) / (r0 + r1)  # h^2 D'' / 2: the Taylor term needs h^2 D'' (see `exact`)
    return base + (m0 * c1 + d1 * c2 + d2 * c3) * scale
