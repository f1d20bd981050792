"""Time grids: explicit 1-D tensors of times, descending from ``t_start`` to ``t_end`` (then 0).

Every grid function returns float64 times. ``final="denoise"`` (the default) ends the grid at
``t = 0``: the last step is a jump to the denoiser's estimate, so ``n`` steps cost ``n`` model
calls for one-evaluation-per-step solvers. ``final="t_min"`` stops at ``t_end`` instead (the
convention of order tests and the PF-ODE reference). ``t_end = 0`` (the default of the masked
token process) makes the spacing itself reach the data: ``n`` steps from ``t_start`` to 0.
A user's own grid goes through :func:`custom_grid` and is used unchanged; nothing is clipped.

:func:`sdedit` starts part-way: it noises a clean sample to ``t_start`` with the process's own
marginal and returns the grid from there (SDEdit, Meng et al. 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._tensor import get_mu
from ..processes import GaussianProcess, Process
from ._common import Generator, check_grid, noise_like, uniform_like

__all__ = [
    "FINALS",
    "SPACINGS",
    "custom_grid",
    "flow_shift",
    "karras",
    "make_grid",
    "sdedit",
    "time_quadratic",
    "uniform_log_snr",
    "uniform_t",
]

SPACINGS = ("log_snr", "uniform_t", "time_quadratic", "karras", "flow_shift")
FINALS = ("denoise", "t_min")


def _plan(
    process: Process, n: int, final: str, t_start: float | None, t_end: float | None
) -> tuple[float, float, int]:
    """``(t_start, t_end, k)``: the ends and the number of points the spacing places."""
    if final not in FINALS:
        raise ValueError(f"unknown final-step policy {final!r}; choose one of {FINALS}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of steps must be an integer >= 1; got {n!r}")
    ts = process.t_max if t_start is None else float(t_start)
    te = process.t_min if t_end is None else float(t_end)
    if not 0 <= te < ts <= 1:
        raise ValueError(
            f"need 0 <= t_end < t_start <= 1; got t_start={ts}, t_end={te}. (t = 0 is the data;"
            " final='denoise' ends the grid there.)"
        )
    if te == 0:
        if final != "denoise":
            raise ValueError(
                "t_end = 0 ends the grid at the data, which is final='denoise' (the default);"
                " final='t_min' needs t_end > 0"
            )
        return ts, te, n + 1  # the spacing itself reaches t = 0
    return ts, te, (n if final == "denoise" else n + 1)


def _finish(points: Tensor, final: str) -> Tensor:
    if final == "denoise" and float(points[-1]) > 0:
        return torch.cat([points, points.new_zeros(1)])
    return points


def _linspace(a: float, b: float, k: int) -> Tensor:
    if k == 1:
        return torch.tensor([a], dtype=torch.float64)
    return torch.linspace(a, b, k, dtype=torch.float64)


def _log_snr_ends(process: Process, ts: float, te: float, what: str) -> tuple[float, float]:
    ls, le = float(process.log_snr(ts)), float(process.log_snr(te))
    if not (math.isfinite(ls) and math.isfinite(le)):
        raise ValueError(
            f"a {what} grid is built in log-SNR, which is infinite at t_start={ts} or t_end={te}"
            f" for {process.name!r}; pass 0 < t_end and a t_start where alpha > 0 (e.g."
            " t_start=0.999 for flows) or use spacing='uniform_t'"
        )
    return ls, le


def uniform_t(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in ``t``."""
    ts, te, k = _plan(process, n, final, t_start, t_end)
    return _finish(_linspace(ts, te, k), final)


def time_quadratic(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in ``sqrt(t)`` (DPM-Solver's ``time_quadratic``)."""
    ts, te, k = _plan(process, n, final, t_start, t_end)
    t = _linspace(ts**0.5, te**0.5, k) ** 2
    t[0], t[-1] = ts, te
    return _finish(t, final)


def uniform_log_snr(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in log-SNR (DPM-Solver's ``logSNR``; the default for ODE solvers)."""
    ts, te, k = _plan(process, n, final, t_start, t_end)
    ls, le = _log_snr_ends(process, ts, te, "log_snr")
    t = process.t_of_log_snr(_linspace(ls, le, k)).to(torch.float64)
    t[0], t[-1] = ts, te  # the ends exactly as asked, not through a round trip
    return _finish(t, final)


def karras(
    process: GaussianProcess,
    n: int,
    *,
    rho: float = 7.0,
    t_start=None,
    t_end=None,
    final: str = "denoise",
) -> Tensor:
    """Karras et al. (2022) Eq. 5: equally spaced in ``s^(1/rho)`` with ``s = sigma / alpha``."""
    ts, te, k = _plan(process, n, final, t_start, t_end)
    _log_snr_ends(process, ts, te, "karras")
    s_max = float(process.sigma(ts) / process.alpha(ts))
    s_min = float(process.sigma(te) / process.alpha(te))
    u = _linspace(0.0, 1.0, k)
    s = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    t = process.t_of_log_snr(-2 * torch.log(s)).to(torch.float64)
    t[0], t[-1] = ts, te
    return _finish(t, final)


def flow_shift(
    process: Process,
    n: int,
    *,
    shift: float = 3.0,
    t_start=None,
    t_end=None,
    final: str = "denoise",
) -> Tensor:
    """Uniform ``t`` warped by ``t' = s t / (1 + (s - 1) t)`` (SD3 / diffusers FlowMatch ``shift``).

    The ends are warped too (``t_start = 1`` and ``0`` are fixed points).
    """
    if not shift > 0:
        raise ValueError(f"shift must be positive; got {shift}")
    ts, te, k = _plan(process, n, final, t_start, t_end)
    u = _linspace(ts, te, k)
    return _finish(shift * u / (1 + (shift - 1) * u), final)


def custom_grid(times: Tensor | Sequence[float]) -> Tensor:
    """A user's grid, validated (decreasing, in [0, 1], finite), returned bit-for-bit unchanged."""
    return check_grid(times)


_BUILDERS = {
    "log_snr": uniform_log_snr,
    "uniform_t": uniform_t,
    "time_quadratic": time_quadratic,
    "karras": karras,
    "flow_shift": flow_shift,
}


def make_grid(process: Process, n: int, spacing: str = "log_snr", **kwargs) -> Tensor:
    """Grid of ``n`` steps with a named ``spacing`` (``SPACINGS``); keywords go to the builder."""
    if spacing not in _BUILDERS:
        raise ValueError(f"unknown grid spacing {spacing!r}; choose one of {SPACINGS}")
    return _BUILDERS[spacing](process, n, **kwargs)


def sdedit(
    process: Process,
    x0: Tensor,
    t_start: float,
    n: int,
    *,
    generator: Generator = None,
    spacing: str = "log_snr",
    cond: Any = None,
    **grid_kwargs,
) -> tuple[Tensor, Tensor]:
    """Partial start (SDEdit, Meng et al. 2022): noise ``x0`` to ``t_start``, grid from there.

    Parameters
    ----------
    process
        The forward process; ``x_t`` is drawn from its ``marginal(x0, t, noise, mu)``.
    x0
        Clean samples ``(B, *event)`` (tokens ``(B, L)`` for the masked process).
    t_start
        Where to start, in ``(0, 1]`` (larger: more freedom from ``x0``).
    n
        Number of steps of the returned grid (from ``t_start`` down).
    generator
        One generator or one per sample (noise per sample, independent of the batch).
    cond
        The condition (or ``mu``) for processes with a mean.
    spacing, grid_kwargs
        Passed to :func:`make_grid` (e.g. ``final="t_min"``, ``t_end=``).

    Returns
    -------
    ``(x_t, grid)`` to hand to any solver: ``sample(name, D, x_t, grid, cond=cond)``.
    """
    t_start = float(t_start)
    if not 0 < t_start <= 1:
        raise ValueError(f"t_start must lie in (0, 1]; got {t_start}")
    grid = make_grid(process, n, spacing, t_start=t_start, **grid_kwargs)
    t = torch.full((x0.shape[0],), t_start, dtype=torch.float64, device=x0.device)
    if isinstance(process, GaussianProcess):
        noise = noise_like(x0, generator)
    else:  # token processes draw their own kind of noise (uniforms for the masked process)
        noise = uniform_like(tuple(x0.shape), generator, x0.device)
    return process.marginal(x0, t, noise, get_mu(cond)), grid
