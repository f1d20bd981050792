"""Mean-reverting diffusion (IR-SDE, Luo et al. 2023; the OU-VE family of MaRS, Li et al. 2025).

Forward SDE ``dx = theta_t (mu - x) dt + s_t dW`` with ``s_t^2 = 2 lam^2 theta_t``; marginal::

    x_t = mu + (x0 - mu) exp(-thetabar_t) + lam sqrt(1 - exp(-2 thetabar_t)) eps,

i.e. ``alpha = exp(-thetabar_t)``, ``sigma = lam sqrt(1 - alpha^2)`` around the mean ``mu`` (the
degraded observation). ``thetabar_t = -log(eps) F(t)`` with ``F`` the normalised integral of the
theta schedule, so ``alpha(1) = eps`` (IR-SDE's ``e^{-thetabar_T} = eps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn.functional import logsigmoid

from .base import HALF_PI, GaussianProcess, as_t, bisect_increasing

__all__ = ["MeanReverting"]

_THETA = ("cosine", "constant")


@dataclass(frozen=True)
class MeanReverting(GaussianProcess):
    """IR-SDE with a ``cosine`` (IR-SDE default) or ``constant`` theta schedule.

    Parameters
    ----------
    max_sigma
        Stationary noise std ``lam`` (IR-SDE ``max_sigma``; 10/255 to 50/255 for images in [0, 1]).
    eps
        ``alpha(1) = exp(-thetabar_1)``; IR-SDE uses 0.005.
    theta_schedule
        ``cosine``: ``theta(u) = 1 - cos^2(pi/2 (u+s)/(1+s)) / cos^2(pi/2 s/(1+s))``; ``constant``.
    """

    name: ClassVar[str] = "mean-reverting"
    has_mean: ClassVar[bool] = True
    max_sigma: float = 50.0 / 255.0
    eps: float = 0.005
    theta_schedule: str = "cosine"
    s: float = 0.008

    def __post_init__(self) -> None:
        if self.theta_schedule not in _THETA:
            raise ValueError(
                f"unknown theta_schedule {self.theta_schedule!r}; choose one of {_THETA}"
            )
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must lie in (0, 1), got {self.eps}")
        if self.max_sigma <= 0:
            raise ValueError(f"max_sigma must be positive, got {self.max_sigma}")

    def _int_theta(self, t: Tensor) -> Tensor:
        """``int_0^t theta(u) du`` in closed form, free of cancellation at small ``t``.

        ``theta(u) = sin(a u) sin(a u + 2b) / cos^2 b`` (difference of squares), whose integral is
        ``[cos(2b) (x - sin x) / (4a) + sin^2(a t) sin(2b) / (2a)] / cos^2 b`` with ``x = 2 a t``.
        """
        if self.theta_schedule == "constant":
            return t
        a = HALF_PI / (1 + self.s)
        b = a * self.s
        x = 2 * a * t
        x_minus_sin = torch.where(x < 1e-2, x**3 / 6 - x**5 / 120 + x**7 / 5040, x - torch.sin(x))
        val = math.cos(2 * b) * x_minus_sin / (4 * a) + torch.sin(a * t) ** 2 * math.sin(2 * b) / (
            2 * a
        )
        return val / math.cos(b) ** 2

    def fraction(self, t: float | Tensor) -> Tensor:
        """``F(t) = int_0^t theta / int_0^1 theta`` in [0, 1]."""
        t = as_t(t)
        return self._int_theta(t) / self._int_theta(torch.ones_like(t))

    def thetabar(self, t: float | Tensor) -> Tensor:
        return -math.log(self.eps) * self.fraction(t)

    def alpha(self, t: float | Tensor) -> Tensor:
        return torch.exp(-self.thetabar(t))

    def sigma(self, t: float | Tensor) -> Tensor:
        return self.max_sigma * torch.sqrt(-torch.expm1(-2 * self.thetabar(t)))

    def log_snr(self, t: float | Tensor) -> Tensor:
        tb = self.thetabar(t)
        return -2 * tb - 2 * math.log(self.max_sigma) - torch.log(-torch.expm1(-2 * tb))

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        lam = as_t(log_snr)
        two_tb = -logsigmoid(lam + 2 * math.log(self.max_sigma))  # alpha^2 = sigmoid(l + 2 log lam)
        frac = (0.5 * two_tb / -math.log(self.eps)).double()
        if self.theta_schedule == "constant":
            return frac.to(lam.dtype)
        # bisection to a bracket, then safeguarded Newton steps (F' = theta / int theta)
        t = bisect_increasing(self.fraction, frac, iters=40)
        z = self._int_theta(torch.ones_like(t))
        for _ in range(3):
            a = HALF_PI / (1 + self.s)
            theta = torch.sin(a * t) * torch.sin(a * t + 2 * a * self.s) / math.cos(a * self.s) ** 2
            step = (self.fraction(t) - frac) * z / theta.clamp(min=1e-300)
            t = (t - step).clamp(0.0, 1.0)
        return t.to(lam.dtype)
