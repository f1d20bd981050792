"""DC-Solver (Zhao et al. 2024): UniPC with dynamic compensation of the stored model output.

UniPC evaluates the model at the predictor's ``y~_i`` and keeps that output ``m_i`` as the history
of the next steps, although the state moves on from the corrected ``y_i``. DC-Solver replaces the
stored ``m_i`` by the Lagrange interpolant (in ``t``) through the last ``dc_order + 1`` outputs,
evaluated at a shifted time (the paper's dynamic compensation)::

    m~_i = sum_j l_j(t~_i) m_{i-j},    t~_i = rho_i t_i + (1 - rho_i) t_{i-1},   j = 0..dc_order

``rho_i = 1`` gives ``m~_i = m_i``: plain UniPC, exactly. The ratios are fitted per grid on a few
calibration paths (:func:`fit_dc_ratios`): step by step, ``rho_i`` minimises the mean squared gap
between the predicted state at ``t_{i+1}`` and a high-NFE reference trajectory there (AdamW,
lr 0.1, 40 iterations; the predictor is polynomial in ``rho_i``, so no gradient flows through the
model). Steps without ``dc_order + 1`` outputs keep ``rho = 1``. The cascade polynomial
regression :class:`CascadeRatios` (the paper's CPR) predicts ratios for unseen step counts and
guidance scales from fitted runs: ``rho(u) = sum_a c_a u^a`` with ``u = i / n`` and each
``c_a`` a quadratic in ``g / 12`` whose coefficients are quadratics in ``n / 50`` (27 numbers,
least squares).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._files import atomic_write_text
from .._tensor import get_mu
from ._common import ddim_step, prepare, report, step_order, steps
from .grids import custom_grid
from .unipc import UNIPC_VARIANTS, _unipc_step

__all__ = ["CascadeRatios", "DCRatios", "dc_solver", "fit_dc_ratios"]

FORMAT = "sciffusion-dc-ratios-1"


@dataclass
class DCRatios:
    """Fitted compensation ratios of one grid: ``ratios[i]`` for step ``i`` (``n`` of them) and
    the grid they belong to (times, float64 list); ``meta`` holds primitives (guidance, ...)."""

    ratios: list[float]
    grid: list[float]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ratios = [float(r) for r in self.ratios]
        self.grid = [float(t) for t in self.grid]
        if len(self.ratios) != len(self.grid) - 1:
            raise ValueError(
                f"need one ratio per step: {len(self.grid) - 1} steps, got {len(self.ratios)}"
            )
        if not all(math.isfinite(r) for r in self.ratios):
            raise ValueError(f"ratios must be finite; got {self.ratios}")

    def save(self, path: str | Path, *, force: bool = True) -> Path:
        """Write the ratios as JSON (atomically)."""
        payload = {"format": FORMAT, "ratios": self.ratios, "grid": self.grid, "meta": self.meta}
        return atomic_write_text(path, json.dumps(payload, indent=2) + "\n", force=force)

    @staticmethod
    def load(path: str | Path) -> DCRatios:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} does not exist; fit ratios with sciffusion.solvers.fit_dc_ratios(...).save()"
            )
        try:
            payload = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{p} is not valid JSON ({err})") from err
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"{p} is not a sciffusion DC-Solver ratios file")
        return DCRatios(payload["ratios"], payload["grid"], payload.get("meta", {}))


def _lagrange_at(nodes: list[float], t: float) -> list[float]:
    """Lagrange basis ``l_j(t)`` through ``nodes`` (python floats)."""
    out = []
    for j, tj in enumerate(nodes):
        w = 1.0
        for k, tk in enumerate(nodes):
            if k != j:
                w *= (t - tk) / (tj - tk)
        out.append(w)
    return out


def _lagrange_weights_t(nodes: list[float], t: Tensor) -> list[Tensor]:
    """The same, differentiable in ``t`` (a 0-d tensor)."""
    out = []
    for j, tj in enumerate(nodes):
        w = torch.ones_like(t)
        for k, tk in enumerate(nodes):
            if k != j:
                w = w * (t - tk) / (tj - tk)
        out.append(w)
    return out


def _compensate(raw: list[tuple[float, Tensor]], rho, dc_order: int):
    """``m~`` from the raw outputs ``[(t, m), ...]`` (most recent last) at ratio ``rho`` (float or
    0-d tensor); ``None`` while fewer than ``dc_order + 1`` outputs exist."""
    if len(raw) < dc_order + 1:
        return None
    pts = raw[-(dc_order + 1) :][::-1]  # most recent first
    nodes = [t for t, _ in pts]
    t_tilde = rho * nodes[0] + (1 - rho) * nodes[1]
    if isinstance(rho, Tensor):
        ws = _lagrange_weights_t(nodes, t_tilde)
    else:
        ws = _lagrange_at(nodes, t_tilde)
    out = pts[0][1] * ws[0]
    for (_, m), w in zip(pts[1:], ws[1:], strict=True):
        out = out + m * w
    return out


def dc_solver(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    ratios: DCRatios | list[float] | None = None,
    order: int = 2,
    variant: str = "bh2",
    dc_order: int = 2,
    lower_order_final: bool = True,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
    _fit: dict | None = None,
) -> Tensor:
    """UniPC-``order`` (data prediction) with dynamically compensated history, one call per step.

    Parameters
    ----------
    ratios
        ``rho_i`` per step (:class:`DCRatios` from :func:`fit_dc_ratios` or
        :meth:`CascadeRatios.predict`, or a list); ``None``: all 1, i.e. UniPC exactly.
    order, variant, lower_order_final
        As in :func:`~sciffusion.solvers.unipc`.
    dc_order
        Degree of the Lagrange interpolant of the outputs (the paper: 2, three outputs).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DC-Solver order must be 1, 2 or 3; got {order}")
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; choose one of {UNIPC_VARIANTS}")
    if dc_order < 1:
        raise ValueError(f"dc_order must be >= 1; got {dc_order}")
    y, model, s = prepare(denoiser, x, grid, cond, name="dc_solver")
    n = len(s) - 1
    rho = _check_ratios(ratios, s.t, n)
    hist: list[tuple[float, Tensor]] = []  # (lam, compensated m), most recent last
    raw: list[tuple[float, Tensor]] = []  # (t, m) as evaluated
    d, m = model(y, 0), None
    for i in steps(n, progress, "dc_solver"):
        ps, pt = s[i], s[i + 1]
        last = i == n - 1
        if m is None:
            m = d
        raw = [*raw, (ps.t, m)][-(dc_order + 1) :]
        if _fit is not None:  # fit rho_i on the predicted state at t_{i+1} (see fit_dc_ratios)
            rho[i] = _fit["fit_step"](i, y, hist, raw, ps, pt, n)
        comp = _compensate(raw, rho[i], dc_order) if rho[i] != 1.0 else None
        m_use = m if comp is None else comp
        d_s = d
        if math.isfinite(ps.lam):
            hist = [*hist, (ps.lam, m_use)][-order:]
        else:
            hist = []
        if pt.sigma == 0 or not hist:
            y = ddim_step(y, m_use, ps, pt)
            d, m = (None if last else model(y, i + 1)), None
        else:
            k = step_order(i, n, order, history=len(hist), lower_order_final=lower_order_final)
            y, d, m = _unipc_step(
                model, y, hist[-k:], ps, pt, i, variant, "data", use_corrector=not last
            )
            if d is None and not last:
                d = model(y, i + 1)
        if _fit is not None:
            _fit["states"].append(y)
            _fit["ratios"] = rho
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d_s))
    return model.output(y)


def _check_ratios(ratios, t: Tensor, n: int) -> list[float]:
    if ratios is None:
        return [1.0] * n
    if isinstance(ratios, DCRatios):
        g = torch.tensor(ratios.grid, dtype=torch.float64)
        if g.shape != t.shape or not torch.allclose(g, t, rtol=1e-9, atol=1e-12):
            raise ValueError(
                f"these DC ratios were fitted on a {len(ratios.grid) - 1}-step grid"
                f" ({ratios.grid[:3]}...), not on this {n}-step grid; fit them for this grid"
                " (fit_dc_ratios) or predict them (CascadeRatios.predict)"
            )
        return list(ratios.ratios)
    vals = [float(r) for r in ratios]
    if len(vals) != n:
        raise ValueError(f"need one ratio per step ({n}); got {len(vals)}")
    return vals


def fit_dc_ratios(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    reference: list[Tensor] | None = None,
    refine: int = 20,
    iters: int = 40,
    lr: float = 0.1,
    order: int = 2,
    variant: str = "bh2",
    dc_order: int = 2,
    max_shift: float = 0.5,
    cond=None,
    meta: dict | None = None,
) -> DCRatios:
    """Fit ``rho_i`` on calibration start samples ``x (m, *event)`` for ``grid``.

    Parameters
    ----------
    reference
        States of a reference trajectory at every grid time after the first (``n`` tensors
        shaped like ``x``; the last one at ``grid[-1]``). Default: UniPC-3 on a grid refined
        ``refine`` times between every pair of grid points (uniform in ``lam``), i.e.
        ``refine * n`` model calls, the paper's "high-NFE reference" at the coarse times.
    iters, lr
        AdamW iterations and learning rate per step (the paper: 40 and 0.1).
    max_shift
        ``rho = 1 + max_shift * tanh(theta)`` keeps the shifted time near the step.
    meta
        Recorded with the ratios (e.g. ``{"guidance": 7.5}``).
    """
    g = torch.as_tensor(grid, dtype=torch.float64)
    n = g.numel() - 1
    if reference is None:
        with torch.no_grad():
            reference = _reference_states(denoiser, x, g, refine, cond)
    if len(reference) != n:
        raise ValueError(f"need {n} reference states (one per grid time after the first)")
    ref = [r.to(x.dtype) for r in reference]

    def fit_step(i, y, hist, raw, ps, pt, n_steps) -> float:
        if len(raw) < dc_order + 1:
            return 1.0
        theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.AdamW([theta], lr=lr)
        target = ref[i] if fit["mu"] is None else ref[i] - fit["mu"]
        k = step_order(i, n_steps, order, history=min(len(hist) + 1, order), lower_order_final=True)

        def predicted(rho):
            m_use = _compensate(raw, rho.to(y.dtype), dc_order)
            if pt.sigma == 0 or not math.isfinite(ps.lam):
                return ddim_step(y, m_use, ps, pt)
            h = [*hist, (ps.lam, m_use)][-order:]
            out, _, _ = _unipc_step(
                None, y, h[-k:], ps, pt, i, variant, "data", use_corrector=False
            )
            return out

        with torch.enable_grad():  # only rho is differentiated: the model outputs are data here
            for _ in range(iters):
                opt.zero_grad()
                rho = 1 + max_shift * torch.tanh(theta)
                loss = (predicted(rho) - target).pow(2).mean()
                loss.backward()
                opt.step()
        return float(1 + max_shift * torch.tanh(theta.detach()))

    fit: dict[str, Any] = {"fit_step": fit_step, "states": []}
    fit["mu"] = denoiser.process.check_mu(get_mu(cond), x)
    with torch.no_grad():
        dc_solver(
            denoiser, x, g, order=order, variant=variant, dc_order=dc_order, cond=cond, _fit=fit
        )  # fmt: skip
    info = {"order": order, "variant": variant, "dc_order": dc_order, "n_calib": int(x.shape[0])}
    return DCRatios(fit["ratios"], g.tolist(), {**info, **(meta or {})})


def _reference_states(denoiser, x: Tensor, g: Tensor, refine: int, cond) -> list[Tensor]:
    """UniPC-3 on ``g`` refined ``refine`` times (uniform in ``lam``; the jump to ``t = 0`` kept
    as the last step); states at the coarse times."""
    from .registry import get_solver

    process = denoiser.process
    lam = 0.5 * process.log_snr(g).to(torch.float64)
    fine = [float(g[0])]
    marks = []
    for i in range(g.numel() - 1):
        a, b = float(lam[i]), float(lam[i + 1])
        if math.isfinite(a) and math.isfinite(b):
            ls = torch.linspace(a, b, refine + 1, dtype=torch.float64)[1:-1]
            fine.extend(process.t_of_log_snr(2 * ls).to(torch.float64).tolist())
        fine.append(float(g[i + 1]))
        marks.append(len(fine) - 2)  # the step index that lands on the coarse time
    states: list[Tensor] = []
    keep = set(marks)
    get_solver("unipc_bh2_3")(
        denoiser, x, custom_grid(fine), cond=cond,
        callback=lambda info: states.append(info["x"]) if info["i"] in keep else None,
    )  # fmt: skip
    return states


@dataclass
class CascadeRatios:
    """Cascade polynomial regression of ratios over (step fraction, guidance, NFE).

    ``coef[a, b, c]`` multiplies ``u^a (g / 12)^b (n / 50)^c`` (``u = i / n``, all degrees <= 2);
    steps before ``dc_order`` keep ``rho = 1``.
    """

    coef: list[list[list[float]]]
    dc_order: int = 2

    @staticmethod
    def _features(u: Tensor, guidance: float, n: int) -> Tensor:
        gs, ns = guidance / 12.0, n / 50.0
        cols = [u**a * gs**b * ns**c for a in range(3) for b in range(3) for c in range(3)]
        return torch.stack(cols, dim=-1)

    @staticmethod
    def fit(runs: list[tuple[DCRatios, float]], *, dc_order: int = 2) -> CascadeRatios:
        """Least squares over every fitted step of ``runs = [(ratios, guidance), ...]`` (runs at
        one guidance scale or one step count leave those terms at the minimum-norm solution)."""
        if not runs:
            raise ValueError("CascadeRatios.fit needs at least one fitted run")
        feats, targets = [], []
        for r, guidance in runs:
            n = len(r.ratios)
            idx = torch.arange(dc_order, n, dtype=torch.float64)
            feats.append(CascadeRatios._features(idx / n, float(guidance), n))
            targets.append(torch.tensor(r.ratios[dc_order:], dtype=torch.float64))
        A, b = torch.cat(feats), torch.cat(targets)
        sol = torch.linalg.lstsq(A, b[:, None], driver="gelsd").solution[:, 0]
        return CascadeRatios(sol.reshape(3, 3, 3).tolist(), dc_order)

    def predict(self, grid: Tensor, *, guidance: float = 1.0) -> DCRatios:
        """Ratios for ``grid`` (any step count) at ``guidance``."""
        g = torch.as_tensor(grid, dtype=torch.float64)
        n = g.numel() - 1
        u = torch.arange(n, dtype=torch.float64) / n
        rho = self._features(u, float(guidance), n) @ torch.tensor(self.coef).reshape(-1).double()
        rho[: self.dc_order] = 1.0
        return DCRatios(rho.tolist(), g.tolist(), {"predicted": True, "guidance": guidance})

    def save(self, path: str | Path, *, force: bool = True) -> Path:
        payload = {"format": FORMAT + "-cascade", "coef": self.coef, "dc_order": self.dc_order}
        return atomic_write_text(path, json.dumps(payload, indent=2) + "\n", force=force)

    @staticmethod
    def load(path: str | Path) -> CascadeRatios:
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != FORMAT + "-cascade":
            raise ValueError(f"{path} is not a sciffusion DC-Solver cascade file")
        return CascadeRatios(payload["coef"], int(payload["dc_order"]))
