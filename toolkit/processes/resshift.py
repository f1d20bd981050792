"""Residual shifting (ResShift, Yue et al. 2023): ``x_t = x0 + eta (y - x0) + kappa sqrt(eta) eps``.

In the shared form ``alpha x0 + (1 - alpha) mu + sigma eps`` this is ``alpha = 1 - eta``,
``mu = y`` (the upsampled low-quality input) and ``sigma = kappa sqrt(eta)``. The chain has ``T``
steps ``t_k = k / T``; ``sqrt(eta_k) = sqrt(eta_1) (sqrt(eta_T)/sqrt(eta_1))^(((k-1)/(T-1))^p)``
(ResShift's exponential schedule, ``sqrt(eta_1) = min(min_noise_level / kappa, min_noise_level)``,
``sqrt(eta_T) = etas_end``), continued linearly in ``sqrt(eta)`` to 0 on ``[0, 1/T]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import GaussianProcess, as_t

__all__ = ["ResShift"]


@dataclass(frozen=True)
class ResShift(GaussianProcess):
    """ResShift schedule; defaults are the v1 15-step config (``kappa 2, p 0.3``)."""

    name: ClassVar[str] = "resshift"
    has_mean: ClassVar[bool] = True
    num_steps: int = 15
    kappa: float = 2.0
    power: float = 0.3
    min_noise_level: float = 0.2
    etas_end: float = 0.99

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {self.num_steps}")
        if not 0 < self._r1() < self.etas_end < 1:
            raise ValueError("need 0 < sqrt(eta_1) < etas_end < 1")

    def _r1(self) -> float:
        return min(self.min_noise_level / self.kappa, self.min_noise_level)

    def sqrt_eta(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        T, r1 = self.num_steps, self._r1()
        u = ((t * T - 1) / (T - 1)).clamp(min=0.0)
        tail = r1 * torch.exp(u**self.power * math.log(self.etas_end / r1))
        return torch.where(t * T < 1, r1 * t * T, tail)

    def eta(self, t: float | Tensor) -> Tensor:
        return self.sqrt_eta(t) ** 2

    def alpha(self, t: float | Tensor) -> Tensor:
        return 1 - self.eta(t)

    def sigma(self, t: float | Tensor) -> Tensor:
        return self.kappa * self.sqrt_eta(t)

    def log_snr(self, t: float | Tensor) -> Tensor:
        r = self.sqrt_eta(t)
        return 2 * (torch.log1p(-(r**2)) - torch.log(self.kappa * r))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        lam = as_t(log_snr)
        k = self.kappa * torch.exp(0.5 * lam)
        r = 2 / (k + torch.sqrt(k**2 + 4))  # root of 1 - r^2 = k r
        T, r1 = self.num_steps, self._r1()
        u = (torch.log(r / r1) / math.log(self.etas_end / r1)).clamp(min=0.0) ** (1 / self.power)
        return torch.where(r <= r1, r / (r1 * T), (1 + u * (T - 1)) / T)

    def step_times(self) -> Tensor:
        """The chain's times ``t_k = k / T`` for ``k = T, ..., 0`` (descending, float64)."""
        return torch.arange(self.num_steps, -1, -1, dtype=torch.float64) / self.num_steps

    @property
    def t_min(self) -> float:
        return 1.0 / self.num_steps
