"""Variance-preserving processes: ``alpha^2 + sigma^2 = 1``; alpha and sigma come from log-SNR.

``alpha^2 = sigmoid(log_snr)`` and ``sigma^2 = sigmoid(-log_snr)`` is exact at both ends
(``log_snr = +-inf``), so no schedule needs ad-hoc clipping to evaluate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid, softplus

from .base import HALF_PI, GaussianProcess, as_t

__all__ = ["VPCosine", "VPDiscrete", "VPLinear"]


class _VP(GaussianProcess):
    def alpha(self, t: float | Tensor) -> Tensor:
        return torch.sigmoid(self.log_snr(t)).sqrt()

    def sigma(self, t: float | Tensor) -> Tensor:
        return torch.sigmoid(-self.log_snr(t)).sqrt()


@dataclass(frozen=True)
class VPLinear(_VP):
    """VP-SDE with linear ``beta(t) = beta_min + t (beta_max - beta_min)`` (Song et al. 2021).

    ``log alpha_bar(t) = -t beta_min - t^2 (beta_max - beta_min) / 2``.
    """

    name: ClassVar[str] = "vp-linear"
    beta_min: float = 0.1
    beta_max: float = 20.0

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return -t * self.beta_min - 0.5 * t**2 * (self.beta_max - self.beta_min)

    def log_snr(self, t: float | Tensor) -> Tensor:
        g = self.log_alpha_bar(t)
        return g - torch.log(-torch.expm1(g))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        neg_g = softplus(-as_t(log_snr))  # -log alpha_bar
        d = self.beta_max - self.beta_min
        # stable root of d/2 t^2 + beta_min t - neg_g = 0
        return 2 * neg_g / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * neg_g))

    def d_alpha(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return 0.5 * self.alpha(t) * -(self.beta_min + t * (self.beta_max - self.beta_min))


@dataclass(frozen=True)
class VPCosine(_VP):
    """Cosine schedule (Nichol & Dhariwal 2021): ``alpha_bar = cos^2(f(t)) / cos^2(f(0))``.

    With ``f(t) = pi/2 (t + s)/(1 + s)``,
    ``log_snr = 2 log cos f - log sin(f - f0) - log sin(f + f0)`` (the difference of squares
    avoids the cancellation in ``1 - alpha_bar``); ``log_snr(1) = -inf`` exactly. ``t_max``
    defaults to where ``log_snr = -10.2`` (half log-SNR -5.1, diffusers' ``lambda_min_clipped``):
    log-SNR solvers need a finite start.
    """

    name: ClassVar[str] = "vp-cosine"
    s: float = 0.008
    log_snr_max_t: float = -10.2

    def _a(self) -> float:
        return HALF_PI / (1 + self.s)

    def log_snr(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        a = self._a()
        f0 = a * self.s
        cos_f = torch.sin(a * (1 - t))  # cos(f) = sin(pi/2 - f), exact zero at t = 1
        return (
            2 * torch.log(cos_f)
            - torch.log(torch.sin(a * t))
            - torch.log(torch.sin(a * t + 2 * f0))
        )

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        lam = as_t(log_snr)
        a = self._a()
        f0 = a * self.s
        c0 = math.cos(f0) ** 2
        cos_f = torch.sqrt(c0 * torch.sigmoid(lam))
        sin_f = torch.sqrt(math.sin(f0) ** 2 + c0 * torch.sigmoid(-lam))
        return torch.atan2(sin_f, cos_f) / a - self.s

    @property
    def t_max(self) -> float:
        return float(self.t_of_log_snr(self.log_snr_max_t))


_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class VPDiscrete(_VP):
    """A discrete-time DDPM (``num_steps`` betas) made continuous as in DPM-Solver.

    Step ``n = 0..N-1`` sits at ``t_n = (n + 1) / N``; ``log alpha_bar`` is interpolated linearly in
    ``t`` between those points and ``(0, 0)``, so the map and its inverse are exact at the nodes.
    Beta schedules follow diffusers' names (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``).
    """

    name: ClassVar[str] = "vp-discrete"
    num_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.beta_schedule not in _BETA_SCHEDULES:
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; choose one of {_BETA_SCHEDULES}"
            )
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")

    def betas(self) -> Tensor:
        """The ``N`` betas in float64."""
        n = self.num_steps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        if self.beta_schedule == "scaled_linear":
            b = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, n, dtype=torch.float64)
            return b**2
        i = torch.arange(n, dtype=torch.float64)
        ab = lambda u: torch.cos((u + 0.008) / 1.008 * HALF_PI) ** 2  # noqa: E731
        return torch.clamp(1 - ab((i + 1) / n) / ab(i / n), max=0.999)

    def _table(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        return _log_alpha_bar_table(self, dtype, device)

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        tt, gg = self._table(t.dtype, t.device)
        return _interp(t, tt, gg)

    def log_snr(self, t: float | Tensor) -> Tensor:
        g = self.log_alpha_bar(t)
        return g - torch.log(-torch.expm1(g))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        lam = as_t(log_snr)
        g = logsigmoid(lam)
        tt, gg = self._table(lam.dtype, lam.device)
        return _interp(-g, -gg, tt)  # -log alpha_bar is increasing in t

    def t_of_step(self, n: Tensor | int) -> Tensor:
        """Continuous time of discrete step ``n`` (0-based, diffusers' timestep index)."""
        return (torch.as_tensor(n, dtype=torch.float64) + 1) / self.num_steps

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_steps


@functools.lru_cache(maxsize=32)
def _log_alpha_bar_table(
    process: VPDiscrete, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Nodes ``(t_n, log alpha_bar_n)`` including ``(0, 0)``, cached per dtype and device."""
    g = torch.cumsum(torch.log1p(-process.betas()), 0)
    tt = torch.linspace(0, 1, process.num_steps + 1, dtype=torch.float64)
    gg = torch.cat([torch.zeros(1, dtype=torch.float64), g])
    return tt.to(device, dtype), gg.to(device, dtype)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation (``np.interp``) with linear extrapolation at both ends."""
    idx = torch.searchsorted(xp, x.detach().contiguous()).clamp(1, len(xp) - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    w = (x - x0) / (x1 - x0)
    return f0 + w * (f1 - f0)
