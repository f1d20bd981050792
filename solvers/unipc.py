"""UniPC (Zhao et al. 2023): unified predictor (UniP) and corrector (UniC) of any order.

With ``m_k`` the model outputs (``D`` for ``prediction="data"``, ``eps`` for ``"noise"``) at past
points, ``r_k = (lam_k - lam_s) / h``, ``D1_k = (m_k - m_0) / r_k``, ``hh = -h`` (data) or ``h``
(noise) and ``B(h) = hh`` (``bh1``) or ``e^{hh} - 1`` (``bh2``), Alg. 2 and Eq. (8) of the paper::

    R_{jk} = r_k^{j-1},   b_j = j! hh phi_{j+1}(hh) / B(h)                       (j, k = 1..p)
    UniP-p:  y~ = (sigma_t/sigma_s) y - alpha_t (e^{hh} - 1) m_0
                  - alpha_t B(h) sum_k rho^p_k D1_k,            rho^p = R[:-1,:-1]^-1 b[:-1]
    UniC-p:  y  = same base - alpha_t B(h) (sum_k rho^c_k D1_k + rho^c_p (m_t - m_0)),
             rho^c = R^-1 b, with m_t = model(y~, t)

(noise prediction: ``(alpha_t/alpha_s) y`` and ``sigma_t`` in place of ``sigma_t/sigma_s`` and
``alpha_t``). ``m_t`` is evaluated at the predictor's ``y~`` and reused as the next step's history,
so UniC costs no extra call; it is skipped on the last step. UniP-p has order ``p``, UniPC-p order
``p + 1``. As in the reference code, ``rho^p = 1/2`` for ``p = 2`` and ``rho^c = 1/2`` for
``p = 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import Point, ddim_step, eps_of, phi, prepare, report, step_order, steps

__all__ = ["UNIPC_VARIANTS", "unipc", "unipc_coefficients"]

UNIPC_VARIANTS = ("bh1", "bh2")


def unipc_coefficients(
    rks: list[float], hh: float, order: int, variant: str
) -> tuple[list[float], list[float], float]:
    """``(rho_p, rho_c, B(h))`` for a step of ``order`` with past ratios ``rks`` (``order - 1`` of
    them, the new point's ``r = 1`` is appended here)."""
    if variant == "bh1":
        bh = hh
    elif variant == "bh2":
        bh = math.expm1(hh)
    else:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {UNIPC_VARIANTS}")
    r = torch.tensor([*rks, 1.0], dtype=torch.float64)
    R = torch.stack([r**j for j in range(order)])
    b = torch.tensor(
        [math.factorial(j) * hh * phi(j + 1, hh) / bh for j in range(1, order + 1)],
        dtype=torch.float64,
    )
    if order == 1:
        rho_p: list[float] = []
    elif order == 2:
        rho_p = [0.5]
    else:
        rho_p = torch.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    rho_c = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()
    return rho_p, rho_c, bh


def unipc(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    order: int = 2,
    variant: str = "bh2",
    corrector: bool = True,
    prediction: str = "data",
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """UniPC-``order`` (1-3) multistep sampler, one model call per step.

    Parameters
    ----------
    order
        Predictor order ``p``; with the corrector the global order is ``p + 1``.
    variant
        ``bh1`` (``B(h) = h``; advised for unconditional sampling below 10 steps by the authors)
        or ``bh2`` (``B(h) = e^h - 1``, the default of the reference code and diffusers).
    corrector
        Apply UniC (free) after every step but the last; ``False`` gives UniP alone.
    prediction
        ``data`` (default) or ``noise``: which model output the polynomial acts on.
    lower_order_final
        Lower orders on the last steps of grids shorter than 15 steps. (The reference code lowers
        them on every grid, which caps the global order at 2: we do it only below 15 steps.)
    """
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3; got {order}")
    if prediction not in ("data", "noise"):
        raise ValueError(f"prediction must be 'data' or 'noise'; got {prediction!r}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {UNIPC_VARIANTS}")
    name = f"unipc_{variant}_{order}"
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    n = len(s) - 1
    hist: list[tuple[float, Tensor]] = []  # (lam, m) with m = D or eps, most recent last
    d, m = model(y, 0), None  # m: the output at ps when it was evaluated off y (UniC)
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        last = i == n - 1
        if math.isfinite(ps.lam):
            if m is None:
                m = d if prediction == "data" else eps_of(y, d, ps)
            hist = [*hist, (ps.lam, m)][-order:]
        else:
            hist = []
        d_s = d
        if pt.sigma == 0 or not hist:
            y = ddim_step(y, d, ps, pt)
            d, m = (None if last else model(y, i + 1)), None
        else:
            k = step_order(i, n, order, history=len(hist), lower_order_final=lower_order_final)
            y, d, m = _unipc_step(
                model,
                y,
                hist[-k:],
                ps,
                pt,
                i,
                variant,
                prediction,
                use_corrector=corrector and not last,
            )
            if d is None and not last:
                d = model(y, i + 1)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d_s))
    return model.output(y)


def _unipc_step(
    model,
    y: Tensor,
    hist,
    ps: Point,
    pt: Point,
    i: int,
    variant: str,
    prediction: str,
    *,
    use_corrector: bool,
):
    """One UniP(C) step; returns ``(y_t, D_t, m_t)``, the outputs at the predictor's ``y~`` (both
    ``None`` without the corrector)."""
    k = len(hist)
    h = pt.lam - ps.lam
    hh = -h if prediction == "data" else h
    lam_s, m0 = hist[-1]
    past = hist[:-1][::-1]  # most recent first
    rks = [(lam - lam_s) / h for lam, _ in past]
    d1s = [(m - m0) / r for (_, m), r in zip(past, rks, strict=True)]
    rho_p, rho_c, bh = unipc_coefficients(rks, hh, k, variant)
    if prediction == "data":
        base = y * (pt.sigma / ps.sigma) - m0 * (pt.alpha * math.expm1(hh))
        scale = pt.alpha * bh
    else:
        base = y * (pt.alpha / ps.alpha) - m0 * (pt.sigma * math.expm1(hh))
        scale = pt.sigma * bh
    y_pred = base
    for rho, d1 in zip(rho_p, d1s, strict=True):
        y_pred = y_pred - d1 * (scale * rho)
    if not use_corrector:
        return y_pred, None, None
    d_t = model(y_pred, i + 1)
    m_t = d_t if prediction == "data" else eps_of(y_pred, d_t, pt)
    corr = (m_t - m0) * rho_c[-1]
    for rho, d1 in zip(rho_c[:-1], d1s, strict=True):
        corr = corr + d1 * rho
    return base - corr * scale, d_t, m_t
