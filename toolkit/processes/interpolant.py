"""Flow-matching / stochastic-interpolant processes ``x_t = alpha(t) x0 + sigma(t) eps``.

A stochastic interpolant ``x_t = a(t) x0 + b(t) x1 + g(t) z`` between data ``x0`` and a Gaussian
``x1`` with extra noise ``z`` has the Gaussian marginal ``alpha = a``, ``sigma = sqrt(b^2 + g^2)``,
which is all a denoiser or an ODE/SDE solver needs (Albergo, Boffi & Vanden-Eijnden 2023).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import HALF_PI, GaussianProcess, as_t, bisect_increasing

__all__ = ["LinearInterpolant", "StochasticInterpolant", "TrigInterpolant"]


@dataclass(frozen=True)
class LinearInterpolant(GaussianProcess):
    """Rectified flow / flow matching: ``x_t = (1 - t) x0 + t eps``; velocity ``eps - x0``."""

    name: ClassVar[str] = "linear"

    def alpha(self, t: float | Tensor) -> Tensor:
        return 1 - as_t(t)

    def sigma(self, t: float | Tensor) -> Tensor:
        return as_t(t).clone()

    def d_alpha(self, t: float | Tensor) -> Tensor:
        return torch.full_like(as_t(t), -1.0)

    def d_sigma(self, t: float | Tensor) -> Tensor:
        return torch.ones_like(as_t(t))

    def log_snr(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return 2 * (torch.log1p(-t) - torch.log(t))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * as_t(log_snr))


@dataclass(frozen=True)
class TrigInterpolant(GaussianProcess):
    """Trigonometric (GVP) interpolant: ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``."""

    name: ClassVar[str] = "trig"

    def alpha(self, t: float | Tensor) -> Tensor:
        return torch.cos(HALF_PI * as_t(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        return torch.sin(HALF_PI * as_t(t))

    def d_alpha(self, t: float | Tensor) -> Tensor:
        return -HALF_PI * torch.sin(HALF_PI * as_t(t))

    def d_sigma(self, t: float | Tensor) -> Tensor:
        return HALF_PI * torch.cos(HALF_PI * as_t(t))

    def log_snr(self, t: float | Tensor) -> Tensor:
        return -2 * torch.log(torch.tan(HALF_PI * as_t(t)))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        return torch.atan(torch.exp(-0.5 * as_t(log_snr))) / HALF_PI


@dataclass(frozen=True)
class StochasticInterpolant(GaussianProcess):
    """General interpolant ``a(t) x0 + b(t) x1 + g(t) z`` from user callables (torch in, torch out).

    Requirements, checked at construction: ``a(0) = 1``, ``b(0) = g(0) = 0``, ``a`` decreasing
    and ``sigma = sqrt(b^2 + g^2)`` increasing, so log-SNR is monotone and its inverse (by
    bisection in float64, exact to round-off) exists. Not serialisable: ``save_pretrained`` refuses
    it; use a named process to ship checkpoints.
    """

    name: ClassVar[str] = "stochastic-interpolant"
    a: Callable[[Tensor], Tensor] = lambda t: 1 - t
    b: Callable[[Tensor], Tensor] = lambda t: t
    g: Callable[[Tensor], Tensor] = lambda t: torch.zeros_like(t)

    def __post_init__(self) -> None:
        t = torch.linspace(0, 1, 257, dtype=torch.float64)
        a, s = self.a(t), torch.sqrt(self.b(t) ** 2 + self.g(t) ** 2)
        if abs(float(a[0]) - 1) > 1e-9 or float(s[0]) > 1e-9:
            raise ValueError(
                "a stochastic interpolant needs a(0) = 1 and b(0) = g(0) = 0 (t = 0 is data)"
            )
        if bool((a[1:] > a[:-1] + 1e-12).any()) or bool((s[1:] < s[:-1] - 1e-12).any()):
            raise ValueError("a(t) must decrease and sqrt(b^2 + g^2) increase on [0, 1]")

    def config(self) -> dict:
        raise TypeError(
            "a StochasticInterpolant built from callables cannot be serialised; use 'linear' or"
            " 'trig' (or subclass with named parameters) for checkpoints"
        )

    def alpha(self, t: float | Tensor) -> Tensor:
        return self.a(as_t(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return torch.sqrt(self.b(t) ** 2 + self.g(t) ** 2)

    def log_snr(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        lam = as_t(log_snr)
        t = bisect_increasing(lambda u: -self.log_snr(u.clamp(1e-300, 1.0)), -lam.double())
        return t.to(lam.dtype)

    @property
    def t_max(self) -> float:
        return 1.0 if float(self.alpha(1.0)) > 0 else 1.0 - 1e-3
