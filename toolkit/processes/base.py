"""Process contract (docs/design.md, contract 1): forward corruption in continuous time.

Every continuous process here is *Gaussian with a mean shift*::

    x_t = alpha(t) * x0 + (1 - alpha(t)) * mu + sigma(t) * eps,    eps ~ N(0, I),

with ``t in [0, 1]`` and ``t = 0`` the data. ``mu = 0`` for VP, VE and flow interpolants;
``mu`` is the condition (the degraded observation) for mean-reverting (IR-SDE) and residual-shifting
(ResShift) processes. Subtracting ``mu`` turns all of them into the same problem, which is why one
solver family serves every process (see :func:`sciffusion.solvers` and the MR Sampler).

``log_snr(t) = log(alpha^2 / sigma^2)`` (the *full* log signal-to-noise ratio; the half log-SNR
``lambda = log(alpha / sigma)`` of the DPM-Solver papers is ``log_snr / 2``).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._tensor import bcast

__all__ = ["GaussianProcess", "Process", "as_t", "bisect_increasing"]


def as_t(t: float | Tensor) -> Tensor:
    """Times as a tensor; python floats become float64 (exact oracles run in float64)."""
    if isinstance(t, Tensor):
        return t if t.is_floating_point() else t.to(torch.get_default_dtype())
    return torch.tensor(float(t), dtype=torch.float64)


def bisect_increasing(
    fn, target: Tensor, lo: float = 0.0, hi: float = 1.0, iters: int = 70
) -> Tensor:
    """Solve ``fn(t) = target`` for a continuous increasing ``fn`` on ``[lo, hi]`` (elementwise).

    70 halvings of ``[0, 1]`` reach below the float64 spacing; targets outside the range clip to the
    end points.
    """
    a = torch.full_like(target, lo)
    b = torch.full_like(target, hi)
    for _ in range(iters):
        m = 0.5 * (a + b)
        up = fn(m) < target
        a = torch.where(up, m, a)
        b = torch.where(up, b, m)
    return 0.5 * (a + b)


class Process(ABC):
    """Base of all forward processes. Subclasses are frozen dataclasses of primitives."""

    name: ClassVar[str]
    is_discrete: ClassVar[bool] = False
    has_mean: ClassVar[bool] = False

    @property
    def t_min(self) -> float:
        """Default last time of a sampling grid before an optional final denoising step."""
        return 1e-3

    @property
    def t_max(self) -> float:
        """Default first time of a sampling grid (where :meth:`prior_sample` draws)."""
        return 1.0

    def config(self) -> dict[str, Any]:
        """JSON-ready description; :func:`sciffusion.processes.process_from_config` inverts it."""
        return {"name": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @abstractmethod
    def log_snr(self, t: float | Tensor) -> Tensor: ...

    @abstractmethod
    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor: ...

    @abstractmethod
    def noise_like(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor: ...

    @abstractmethod
    def marginal(
        self, x0: Tensor, t: Tensor, noise: Tensor, mu: Tensor | None = None
    ) -> Tensor: ...

    @abstractmethod
    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        mu: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor: ...

    def noise_cond(self, t: Tensor) -> Tensor:
        """The scalar a network is conditioned on: ``-log_snr / 8`` (EDM's ``ln(sigma)/4`` for VE).

        It is finite at ``t = 0`` and ``t = 1`` (clamped to [-20, 20]) and means the same noise
        level for every process, so one network architecture serves all of them.
        """
        return (-self.log_snr(t) / 8.0).clamp(-20.0, 20.0)


class GaussianProcess(Process):
    """``x_t = alpha x0 + (1 - alpha) mu + sigma eps``; subclasses give log-SNR and its inverse."""

    @abstractmethod
    def alpha(self, t: float | Tensor) -> Tensor: ...

    @abstractmethod
    def sigma(self, t: float | Tensor) -> Tensor: ...

    def d_alpha(self, t: float | Tensor) -> Tensor:
        """``d alpha / dt`` (autograd by default; analytic where a subclass knows it)."""
        return _grad(self.alpha, as_t(t))

    def d_sigma(self, t: float | Tensor) -> Tensor:
        """``d sigma / dt`` (autograd by default; analytic where a subclass knows it)."""
        return _grad(self.sigma, as_t(t))

    def check_mu(self, mu: Tensor | None, x: Tensor) -> Tensor | None:
        """Validate the mean ``mu``: required (shaped like ``x``) iff the process has one."""
        if self.has_mean:
            if mu is None:
                raise ValueError(
                    f"the {self.name!r} process drifts towards a condition-dependent mean mu,"
                    " but no mu was given. Pass cond=mu (a tensor shaped like x, e.g. the degraded"
                    " observation) or cond={'mu': mu, ...}."
                )
            if mu.shape != x.shape:
                raise ValueError(
                    f"mu has shape {tuple(mu.shape)} but x has shape {tuple(x.shape)}; the mean"
                    f" of a {self.name!r} process must match the data shape."
                )
            return mu
        return None

    def noise_like(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor, mu: Tensor | None = None) -> Tensor:
        """Draw ``x_t | x0`` given the noise: ``alpha x0 + (1 - alpha) mu + sigma noise``."""
        if noise.shape != x0.shape:
            raise ValueError(
                f"noise shape {tuple(noise.shape)} differs from data shape {tuple(x0.shape)}"
            )
        mu = self.check_mu(mu, x0)
        t = t.to(x0.dtype)
        a, s = bcast(self.alpha(t), x0), bcast(self.sigma(t), x0)
        xt = a * x0 + s * noise
        if mu is not None:
            xt = xt + (1 - a) * mu
        return xt

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        mu: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Draw ``x_{t_max}``: ``N(mu, sigma(t_max)^2 I)`` (``mu = 0`` without a mean)."""
        eps = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        x = float(self.sigma(self.t_max)) * eps
        if self.has_mean:
            x = x + self.check_mu(mu, x).to(dtype)
        return x

    def input_scale(self, t: Tensor, sigma_data: float = 1.0) -> Tensor:
        """Network input scaling ``c_in = 1 / std(x_t)`` for data of std ``sigma_data`` (EDM)."""
        a, s = self.alpha(t), self.sigma(t)
        if self.has_mean:  # x_t stays on the scale of mu plus noise
            return 1.0 / torch.sqrt(sigma_data**2 + s**2)
        return 1.0 / torch.sqrt((a * sigma_data) ** 2 + s**2)


def _grad(fn, t: Tensor) -> Tensor:
    with torch.enable_grad():
        tt = t.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(tt).sum(), tt)
    return g


HALF_PI = math.pi / 2
