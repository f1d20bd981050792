"""Time grids: explicit 1-D tensors of times, descending from ``t_start`` to ``t_end`` (then 0).

Every grid function returns float64 times. ``final="denoise"`` (the default) ends the grid at
``t = 0``: the last step is a jump to the denoiser's estimate, so ``n`` steps cost ``n`` model
calls for one-evaluation-per-step solvers. ``final="t_min"`` stops at ``t_end`` instead (the
convention of order tests and the PF-ODE reference). A user's own grid goes through
:func:`custom_grid` and is used unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..processes import GaussianProcess, Process
from ._common import check_grid

__all__ = [
    "SPACINGS",
    "custom_grid",
    "flow_shift",
    "karras",
    "make_grid",
    "time_quadratic",
    "uniform_log_snr",
    "uniform_t",
]

SPACINGS = ("log_snr", "uniform_t", "time_quadratic", "karras", "flow_shift")
FINALS = ("denoise", "t_min")


def _ends(process: Process, t_start: float | None, t_end: float | None) -> tuple[float, float]:
    ts = process.t_max if t_start is None else float(t_start)
    te = process.t_min if t_end is None else float(t_end)
    if not 0 < te < ts <= 1:
        raise ValueError(
            f"need 0 < t_end < t_start <= 1; got t_start={ts}, t_end={te}. (t = 0 is the data; use"
            " final='denoise' to end there.)"
        )
    return ts, te


def _finish(points: Tensor, final: str) -> Tensor:
    if final == "denoise":
        return torch.cat([points, points.new_zeros(1)])
    return points


def _count(n: int, final: str) -> int:
    if final not in FINALS:
        raise ValueError(f"unknown final-step policy {final!r}; choose one of {FINALS}")
    if n < 1:
        raise ValueError(f"the number of steps must be >= 1; got {n}")
    return n if final == "denoise" else n + 1


def _linspace(a: float, b: float, k: int) -> Tensor:
    if k == 1:
        return torch.tensor([a], dtype=torch.float64)
    return torch.linspace(a, b, k, dtype=torch.float64)


def uniform_t(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in ``t``."""
    k = _count(n, final)
    ts, te = _ends(process, t_start, t_end)
    return _finish(_linspace(ts, te, k), final)


def time_quadratic(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in ``sqrt(t)`` (DPM-Solver's ``time_quadratic``)."""
    k = _count(n, final)
    ts, te = _ends(process, t_start, t_end)
    return _finish(_linspace(ts**0.5, te**0.5, k) ** 2, final)


def uniform_log_snr(
    process: Process, n: int, *, t_start=None, t_end=None, final: str = "denoise"
) -> Tensor:
    """Equally spaced in log-SNR (DPM-Solver's ``logSNR``; the default for ODE solvers)."""
    k = _count(n, final)
    ts, te = _ends(process, t_start, t_end)
    ls, le = float(process.log_snr(ts)), float(process.log_snr(te))
    if not (abs(ls) < float("inf") and abs(le) < float("inf")):
        raise ValueError(
            f"log-SNR is infinite at t_start={ts} or t_end={te} for {process.name!r}; a log-SNR grid"
            " needs finite ends (pass t_start < 1 for flows, e.g. t_start=0.999)"
        )
    lam = _linspace(ls, le, k)
    t = process.t_of_log_snr(lam)
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
    k = _count(n, final)
    ts, te = _ends(process, t_start, t_end)
    s_max = float(process.sigma(ts) / process.alpha(ts))
    s_min = float(process.sigma(te) / process.alpha(te))
    if not s_max < float("inf"):
        raise ValueError(
            "a Karras grid needs alpha(t_start) > 0; pass t_start < 1 for this process"
        )
    u = _linspace(0.0, 1.0, k)
    s = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    t = process.t_of_log_snr(-2 * torch.log(s))
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
    """Uniform ``t`` warped by ``t' = s t / (1 + (s - 1) t)`` (SD3 / diffusers FlowMatch ``shift``)."""
    if shift <= 0:
        raise ValueError(f"shift must be positive; got {shift}")
    k = _count(n, final)
    ts, te = _ends(process, t_start, t_end)
    u = _linspace(ts, te, k)
    return _finish(shift * u / (1 + (shift - 1) * u), final)


def custom_grid(times: Tensor | Sequence[float]) -> Tensor:
    """A user's grid, validated (decreasing, in [0, 1], finite) and returned bit-for-bit unchanged."""
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
