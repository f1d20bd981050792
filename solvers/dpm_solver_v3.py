"""DPM-Solver-v3 (Zheng et al. 2023): multistep predictor-corrector on empirical model statistics.

With the statistics ``l, s, b`` (:mod:`.ems`), their integrals ``L = int l``, ``S = int s``,
``B = int e^{-S} b`` (in ``lam``), ``u = y / alpha`` and ``f = (1 - l) u - D``, the exact step from
``s`` to ``t`` is (Eq. 6-8 of the paper, in the VE frame)::

    u_t = e^{L_s - L_t} u_s - e^{L_s - L_t} int_s^t e^{(L+S)(lam) - (L+S)_s} g(lam) dlam
          - e^{(L+S)_s - L_t} int_s^t e^{(L+S)(lam) - (L+S)_s} (B(lam) - B_s) dlam
    g(lam) = e^{S_s - S(lam)} f(lam) - e^{S_s} (B(lam) - B_s)

and the solver expands ``g`` in a Taylor series at ``lam_s`` from past values (multistep
predictor, order ``p``) and, after the model call at the predicted point, recomputes the step
with that value too (corrector; free: the model output is reused with ``N = alpha f`` held
fixed, as UniC). The Taylor coefficients come from the Lagrange interpolant of the points
(``pseudo=False``) or from divided differences alone (``pseudo=True``: the paper's
"pseudo-order" for small NFE); ``c_pseudo`` raises the corrector's order by one. The integrals
are computed on the union of the statistics grid and the sampling grid (pieces at most 0.25 wide
in ``lam``, 8-point Gauss-Legendre per piece, ``L + S`` and ``B`` linear on each piece): with
degenerate statistics (``l = 1``, ``s = b = 0``) they are exact and DPM-Solver-v3 without
corrector is DPM-Solver++ with the Lagrange-exact multistep steps (``dpmpp_multistep(
variant="exact")``). Unlike the reference code the sampling grid is used as given (not snapped to
the statistics grid). A step from ``alpha = 0`` or to ``t = 0`` is a first-order step (DDIM).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._common import ddim_step, prepare, report, step_order, steps
from ._expint import gauss_legendre
from .ems import ModelStatistics, degenerate

__all__ = ["dpm_solver_v3", "v3_coefficients"]

MAX_PIECE = 0.25  # widest integration piece in lam
GL_NODES = 8


@dataclass
class _Coefficients:
    """Per-grid-point and per-step float64 tensors shaped ``(*event)`` (or broadcastable)."""

    l: list[Tensor]  # at grid points
    S: list[Tensor]
    B: list[Tensor]
    A: dict[int, Tensor]  # e^{L_s - L_t} for step i (s = i, t = i + 1)
    E: dict[int, list[Tensor]]  # int e^{Q - Q_s} (lam - lam_s)^q / q!, q = 0..max_order-1
    J: dict[int, Tensor]  # e^{Q_s - L_t} int e^{Q - Q_s} (B - B_s)
    eS: list[Tensor] = field(default_factory=list)  # e^{S} at grid points
    emS: list[Tensor] = field(default_factory=list)  # e^{-S}
    weights: dict = field(default_factory=dict)  # per-step point weights (see _update)


def v3_coefficients(
    stats: ModelStatistics, lams: list[float], max_order: int, *, dtype, device
) -> _Coefficients:
    """Integrals of the statistics for the grid's half log-SNRs ``lams`` (``-inf``/``inf`` ends
    allowed: those steps are first order and get no coefficients)."""
    finite = [i for i, v in enumerate(lams) if math.isfinite(v)]
    if not finite:
        return _Coefficients([], [], [], {}, {}, {})
    lo, hi = lams[finite[0]], lams[finite[-1]]
    inner = stats.lam[(stats.lam > lo) & (stats.lam < hi)].tolist()
    nodes = sorted({*(lams[i] for i in finite), *inner})
    fine = [nodes[0]]
    for a, b in itertools.pairwise(nodes):
        m = max(1, math.ceil((b - a) / MAX_PIECE))
        fine.extend(a + (b - a) * (j + 1) / m for j in range(m - 1))
        fine.append(b)
    F = torch.tensor(fine, dtype=torch.float64)
    l, s, b = stats.at(F)  # (NF, *E)
    shape = (-1, *([1] * (l.ndim - 1)))
    dF = (F[1:] - F[:-1]).reshape(shape)
    L = torch.cat([torch.zeros_like(l[:1]), torch.cumsum(0.5 * dF * (l[1:] + l[:-1]), 0)])
    S = torch.cat([torch.zeros_like(s[:1]), torch.cumsum(0.5 * dF * (s[1:] + s[:-1]), 0)])
    # B = int e^{-S} b with -S and b linear on each piece (Gauss-Legendre)
    x, w = gauss_legendre(GL_NODES, 0.0, 1.0)  # on [0, 1]
    xs, ws = x.reshape(1, -1, *([1] * (l.ndim - 1))), w.reshape(1, -1, *([1] * (l.ndim - 1)))
    S0, S1 = S[:-1, None], S[1:, None]
    b0, b1 = b[:-1, None], b[1:, None]
    piece_B = (dF[:, None] * ws * torch.exp(-(S0 + (S1 - S0) * xs)) * (b0 + (b1 - b0) * xs)).sum(1)
    B = torch.cat([torch.zeros_like(b[:1]), torch.cumsum(piece_B, 0)])
    Q = L + S
    index = {v: j for j, v in enumerate(fine)}
    at = [index.get(v) for v in lams]

    def cast(v: Tensor) -> Tensor:
        return v.to(device=device, dtype=dtype)

    coef = _Coefficients(
        l=[cast(l[j]) if j is not None else None for j in at],  # type: ignore[misc]
        S=[cast(S[j]) if j is not None else None for j in at],  # type: ignore[misc]
        B=[cast(B[j]) if j is not None else None for j in at],  # type: ignore[misc]
        A={},
        E={},
        J={},
        eS=[cast(torch.exp(S[j])) if j is not None else None for j in at],  # type: ignore[misc]
        emS=[cast(torch.exp(-S[j])) if j is not None else None for j in at],  # type: ignore[misc]
    )
    for i in range(len(lams) - 1):
        js, jt = at[i], at[i + 1]
        if js is None or jt is None:
            continue
        lam_s = fine[js]
        a, bnd = F[js:jt], F[js + 1 : jt + 1]  # pieces (P,)
        width = (bnd - a).reshape(-1, 1, *([1] * (l.ndim - 1)))
        nodes_lam = a.reshape(width.shape) + width * xs  # (P, G, 1...)
        q0, q1 = Q[js:jt, None], Q[js + 1 : jt + 1, None]
        B0, B1 = B[js:jt, None], B[js + 1 : jt + 1, None]
        expo = torch.exp(q0 + (q1 - q0) * xs - Q[js]) * ws * width  # (P, G, *E)
        dl = nodes_lam - lam_s
        coef.E[i] = [cast((expo * dl**q / math.factorial(q)).sum((0, 1))) for q in range(max_order)]
        coef.J[i] = cast(
            torch.exp(Q[js] - L[jt]) * (expo * (B0 + (B1 - B0) * xs - B[js])).sum((0, 1))
        )
        coef.A[i] = cast(torch.exp(L[js] - L[jt]))
    return coef


def _cached_coefficients(stats: ModelStatistics, lams: list[float], max_order: int, y: Tensor):
    """:func:`v3_coefficients`, memoised on the statistics object per grid, order, dtype and
    device (the integrals cost ~20 ms for a 50-step grid; sampling again on the same grid is
    free). The cache holds at most 8 grids."""
    cache = stats.__dict__.setdefault("_coef_cache", {})
    key = (tuple(lams), max_order, y.dtype, str(y.device))
    if key not in cache:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        cache[key] = v3_coefficients(stats, lams, max_order, dtype=y.dtype, device=y.device)
    return cache[key]


def _solve(A: list[list[float]], B: list[list[float]]) -> list[list[float]]:
    """``A^{-1} B`` for a small dense system (Gauss-Jordan with partial pivoting, floats):
    faster than a torch call for the 1-4 point systems of a step."""
    m = len(A)
    M = [list(A[r]) + list(B[r]) for r in range(m)]
    for col in range(m):
        piv = max(range(col, m), key=lambda r: abs(M[r][col]))
        M[col], M[piv] = M[piv], M[col]
        inv = 1.0 / M[col][col]
        M[col] = [v * inv for v in M[col]]
        for r in range(m):
            if r != col and M[r][col] != 0.0:
                f = M[r][col]
                M[r] = [v - f * w for v, w in zip(M[r], M[col], strict=True)]
    return [row[m:] for row in M]


def _taylor_matrix(lams: list[float], lam_s: float, pseudo: bool) -> list[list[float]]:
    """``W (m, m)``: Taylor coefficients ``g^(q)(lam_s) ~ sum_j W[q][j] g_j`` from the points
    ``lams`` (``lams[0] = lam_s``): the Lagrange interpolant's derivatives (``pseudo=False``) or
    ``q!`` times the divided differences ``g[lam_0..lam_q]`` (``pseudo=True``)."""
    m = len(lams)
    eye = [[float(r == c) for c in range(m)] for r in range(m)]
    if not pseudo:
        V = [[(v - lam_s) ** q / math.factorial(q) for q in range(m)] for v in lams]
        return _solve(V, eye)
    # divided differences on the identity: table[i][j] holds the weights of g[lam_j..lam_{j+i}]
    table = [[eye[j] for j in range(m)]]
    for i in range(1, m):
        prev = table[-1]
        table.append(
            [
                [
                    (a - b) / (lams[j] - lams[j + i])
                    for a, b in zip(prev[j], prev[j + 1], strict=True)
                ]
                for j in range(m - i)
            ]
        )
    return [[w * math.factorial(q) for w in table[q][0]] for q in range(m)]


def dpm_solver_v3(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    statistics: ModelStatistics | None = None,
    order: int = 2,
    corrector: bool = True,
    p_pseudo: bool = False,
    c_pseudo: bool = True,
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver-v3 multistep predictor(-corrector), one model call per step.

    Parameters
    ----------
    statistics
        :class:`~sciffusion.solvers.ModelStatistics` of this denoiser (from
        :func:`~sciffusion.solvers.estimate_statistics` or ``ModelStatistics.load``); ``None``
        uses the degenerate ``l = 1, s = b = 0`` (DPM-Solver++ with the v3 corrector).
    order
        Predictor order ``p`` (1-3), lower while warming up and, below 15 steps, at the end.
    corrector
        Recompute each step (except the last) with the model output at the predicted point.
    p_pseudo, c_pseudo
        Pseudo-order (divided differences) for the predictor; ``c_pseudo`` gives the corrector
        order ``p + 1`` through the new point with pseudo derivatives (the paper's default for
        small NFE), else order ``p``.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver-v3 order must be 1, 2 or 3; got {order}")
    y, model, s = prepare(denoiser, x, grid, cond, name="dpm_solver_v3")
    stats = statistics if statistics is not None else degenerate(x.ndim - 1)
    if stats.l.ndim - 1 != x.ndim - 1 or any(
        e not in (1, n) for e, n in zip(stats.event_shape, x.shape[1:], strict=True)
    ):
        raise ValueError(
            f"statistics of event shape {stats.event_shape} do not fit samples of event shape"
            f" {tuple(x.shape[1:])}; estimate them on samples shaped like these"
        )
    n = len(s) - 1
    lams = [s[i].lam for i in range(n + 1)]
    coef = _cached_coefficients(stats, lams, order + 1, y)
    hist: list[tuple[int, Tensor]] = []  # (grid index, f), most recent last
    d = model(y, 0)
    f_next: Tensor | None = None  # f at the current point when it came from the corrector
    for i in steps(n, progress, "dpm_solver_v3"):
        ps, pt = s[i], s[i + 1]
        last = i == n - 1
        d_s = d
        if i not in coef.A:  # a step from alpha = 0 or to t = 0: first order
            if coef.l and coef.l[i] is not None and f_next is not None:
                d = (1 - coef.l[i]) * (y / ps.alpha) - f_next  # the output the corrector kept
            y = ddim_step(y, d, ps, pt)
            hist, f_next = [], None
            d = None if last else model(y, i + 1)
            report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d_s))
            continue
        u = y / ps.alpha
        f = f_next if f_next is not None else (1 - coef.l[i]) * u - d
        hist = [*hist, (i, f)][-order:]
        p = step_order(i, n, order, history=len(hist), lower_order_final=lower_order_final)
        u_pred = _update(coef, i, u, hist[-p:][::-1], lams, p_pseudo)
        y_pred = u_pred * pt.alpha
        if last:
            y = y_pred
        else:
            d = model(y_pred, i + 1)
            f_new = (1 - coef.l[i + 1]) * u_pred - d
            c_order = p + 1 if c_pseudo else p
            if corrector and c_order > 1 and (i + 1) in coef.A:
                points = [(i, f), (i + 1, f_new), *hist[-p:][::-1][1:]][:c_order]
                y = _update(coef, i, u, points, lams, c_pseudo) * pt.alpha
                f_next = f_new  # N = alpha f is kept: the output is reused at the new point
            else:
                y, f_next = y_pred, None
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d_s))
    return model.output(y)


def _update(coef: _Coefficients, i: int, u: Tensor, points, lams, pseudo: bool) -> Tensor:
    """``u_{i+1}`` from ``u_i`` with the Taylor expansion of ``g`` through ``points`` = list of
    ``(grid index, f)``, the anchor ``s = i`` first; ``g_j = e^{S_s - S_j} f_j - e^{S_s}(B_j -
    B_s)``, and ``int e^{Q - Q_s} g = sum_j w_j g_j`` with ``w_j = sum_q E_q W[q][j]``. The
    event-shaped weights depend only on the grid: they are memoised with the coefficients."""
    key = (i, tuple(j for j, _ in points), pseudo)
    if key not in coef.weights:
        W = _taylor_matrix([lams[j] for j, _ in points], lams[i], pseudo)  # (m, m)
        E, A = coef.E[i], coef.A[i]
        m = len(points)
        ws, shift = [], -coef.J[i]
        for jj, (j, _) in enumerate(points):
            w = E[0] * W[0][jj]
            for q in range(1, m):
                w = w + E[q] * W[q][jj]
            if j != i:
                shift = shift + (coef.B[j] - coef.B[i]) * coef.eS[i] * w * A
                w = w * (coef.eS[i] * coef.emS[j])
            ws.append(-w * A)
        coef.weights[key] = (ws, shift)
    ws, shift = coef.weights[key]
    out = u * coef.A[i] + shift
    for (_, f), w in zip(points, ws, strict=True):
        out = out + f * w
    return out
