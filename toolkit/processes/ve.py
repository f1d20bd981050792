"""Variance-exploding process (EDM frame): ``x_t = x0 + sigma(t) eps``, ``sigma(t) = sigma_max t``.

EDM (Karras et al. 2022) uses ``sigma(t) = t``; we scale time to ``[0, 1]``. The time
parametrisation is cosmetic: grids (Karras rho, log-SNR, ...) are built in sigma or log-SNR and
mapped back with the exact inverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import GaussianProcess, as_t

__all__ = ["VE"]


@dataclass(frozen=True)
class VE(GaussianProcess):
    """``alpha = 1``, ``sigma = sigma_max t``; ``t_min = sigma_min / sigma_max`` (EDM 0.002, 80)."""

    name: ClassVar[str] = "ve"
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min},"
                f" sigma_max={self.sigma_max}"
            )

    def alpha(self, t: float | Tensor) -> Tensor:
        return torch.ones_like(as_t(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        return self.sigma_max * as_t(t)

    def d_alpha(self, t: float | Tensor) -> Tensor:
        return torch.zeros_like(as_t(t))

    def d_sigma(self, t: float | Tensor) -> Tensor:
        return torch.full_like(as_t(t), self.sigma_max)

    def log_snr(self, t: float | Tensor) -> Tensor:
        return -2 * torch.log(self.sigma(t))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        return torch.exp(-0.5 * as_t(log_snr)) / self.sigma_max

    def t_of_sigma(self, sigma: float | Tensor) -> Tensor:
        return as_t(sigma) / self.sigma_max

    @property
    def t_min(self) -> float:
        return self.sigma_min / self.sigma_max


LOG_SIGMA_DATA_EDM = math.log(0.5)
