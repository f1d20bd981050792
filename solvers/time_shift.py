"""Time-Shift sampler (Li et al. 2024, "Alleviating exposure bias ... with shifted time steps").

A trained network sees, at sampling time, inputs whose noise level does not quite match the time
it is told (exposure bias). Before each model call at grid time ``t > cutoff`` the sampler picks,
per sample, the time ``t_s`` in a window around ``t`` whose marginal variance best matches the
sample's own variance over its entries (Alg. 1 of the paper)::

    t_s = argmin_{tau in window(t)} ( Var_entries(x) - (alpha(tau)^2 v_data + sigma(tau)^2) )^2

and calls the model at ``t_s``; the solver's coefficients keep the grid times. The paper matches
``1 - alpha_bar(tau)`` (``v_data = 0`` on VP processes). The window is a fraction of the current
step, ``tau in [t - w dt, t + w dt]`` with ``dt = t_i - t_{i+1}``: the paper's window of ``W``
training steps out of ``T`` at ``S`` sampling steps is ``w = W S / T``. ``w = 0`` is the base
solver exactly. This is a correction for trained networks: on an exact denoiser there is no
exposure bias to correct, and the shift should leave the result unchanged or make it worse.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._tensor import bcast, get_mu
from ..processes import GaussianProcess
from ._common import check_grid
from .registry import get_solver

__all__ = ["TimeShiftDenoiser", "time_shift"]


class TimeShiftDenoiser:
    """``D(x, t_s(x, t), cond)``: a denoiser transform that shifts each call's time per sample.

    ``grid`` gives the step sizes of the window; calls at times that are not grid points, and
    at ``t <= cutoff``, pass through unchanged. ``shifts`` records ``(t, t_s)`` of every shifted
    call (for diagnostics).
    """

    def __init__(
        self,
        denoiser,
        grid: Tensor,
        *,
        window: float,
        cutoff: float,
        data_var: float = 0.0,
        candidates: int = 21,
    ) -> None:
        process = getattr(denoiser, "process", None)
        if not isinstance(process, GaussianProcess):
            raise TypeError("the time-shift sampler needs a denoiser with a Gaussian `process`")
        if not window >= 0:
            raise ValueError(f"window must be >= 0 (a fraction of the step); got {window}")
        if candidates < 2:
            raise ValueError(f"candidates must be >= 2; got {candidates}")
        if not data_var >= 0:
            raise ValueError(f"data_var must be >= 0; got {data_var}")
        self.denoiser = denoiser
        self.process = process
        g = check_grid(grid)
        self._times, self._dts = g[:-1], g[:-1] - g[1:]
        self.window = float(window)
        self.cutoff = float(cutoff)
        self.data_var = float(data_var)
        self._u = torch.linspace(-1.0, 1.0, candidates, dtype=torch.float64)
        self.shifts: list[tuple[float, Tensor]] = []

    def __call__(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        t0 = float(t.reshape(-1)[0])
        dt = self._step_at(t0)
        if self.window == 0 or dt is None or t0 <= self.cutoff:
            return self.denoiser(x, t, cond)
        p = self.process
        lo, hi = p.t_min, p.t_max
        tau = (t0 + self.window * dt * self._u).clamp(lo, hi)  # (C,)
        target = p.alpha(tau) ** 2 * self.data_var + p.sigma(tau) ** 2  # (C,) float64
        mu = p.check_mu(get_mu(cond), x)
        y = x if mu is None else x - bcast(1 - p.alpha(t.to(torch.float64)), x).to(x.dtype) * mu
        var = y.detach().reshape(y.shape[0], -1).to(torch.float64).var(dim=1)  # (B,)
        best = (var[:, None] - target[None, :].to(var.device)).pow(2).argmin(dim=1)
        t_s = tau.to(var.device)[best].to(t.dtype)
        self.shifts.append((t0, t_s))
        return self.denoiser(x, t_s, cond)

    def _step_at(self, t0: float) -> float | None:
        """The step size of the grid point ``t0`` (matched to float32 round-off), else None."""
        i = int((self._times - t0).abs().argmin())
        if abs(float(self._times[i]) - t0) > 1e-6 * max(1.0, abs(t0)):
            return None
        return float(self._dts[i])


def time_shift(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    solver: str = "ddim",
    window: float = 0.2,
    cutoff: float = 0.3,
    data_var: float = 0.0,
    candidates: int = 21,
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
    **knobs,
) -> Tensor:
    """Run the registered ``solver`` with time-shifted model calls (:class:`TimeShiftDenoiser`).

    Parameters
    ----------
    solver
        Any registered sampler (the paper: DDIM, PNDM, DEIS, DPM-Solver); ``knobs`` go to it.
    window
        Half-width of the search window as a fraction of the current step (0: no shift).
    cutoff
        Shift only while ``t > cutoff`` (the paper's 300-900 of 1000 steps: 0.3-0.9).
    data_var
        Per-entry data variance in the matched variance ``alpha^2 v_data + sigma^2`` (the paper:
        0, i.e. ``1 - alpha_bar``).
    candidates
        Number of equally spaced candidate times in the window.
    """
    spec = get_solver(solver)
    if window == 0:
        return spec(
            denoiser, x, grid, cond=cond, generator=generator, callback=callback,
            progress=progress, **knobs,
        )  # fmt: skip
    shifted = TimeShiftDenoiser(
        denoiser, grid, window=window, cutoff=cutoff, data_var=data_var, candidates=candidates
    )
    return spec(
        shifted, x, grid, cond=cond, generator=generator, callback=callback, progress=progress,
        **knobs,
    )  # fmt: skip
