"""Exact Gaussian data ``x0 ~ N(m, Sigma)``: samples, exact denoiser, posterior covariance and the
closed-form probability-flow ODE solution, for every Gaussian process.

With ``y = x - (1 - alpha) mu = alpha x0 + sigma eps`` and ``Sigma = U diag(lam) U^T``::

    E[x0 | x_t]   = m + U diag(alpha lam / (alpha^2 lam + sigma^2)) U^T (y - alpha m)     (Tweedie)
    Cov[x0 | x_t] = U diag(lam sigma^2 / (alpha^2 lam + sigma^2)) U^T

and in the VE frame ``x~ = y / alpha``, ``s = sigma / alpha`` the PF-ODE is solved exactly by
``x~(s) = m + U diag(sqrt((lam + s^2) / (lam + s_T^2))) U^T (x~_T - m)`` (Wang & Vastola 2024).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time, bcast, get_mu
from ..processes import GaussianProcess

__all__ = ["GaussianOracle"]


class GaussianOracle:
    """Gaussian data ``N(mean (d,), cov (d, d))`` laid out as ``event_shape`` (default ``(d,)``).

    ``oracle.denoiser(process)`` is an exact denoiser ``D(x, t, cond=None)`` (contract 2). Work in
    float64 for order and posterior tests.
    """

    def __init__(
        self,
        mean: Tensor,
        cov: Tensor,
        *,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        mean = torch.as_tensor(mean)
        cov = torch.as_tensor(cov, dtype=mean.dtype)
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(
                f"cov must be ({d}, {d}) for a mean of {d} entries; got {tuple(cov.shape)}"
            )
        if not torch.allclose(cov, cov.mT, atol=1e-10 * float(cov.abs().max()) + 1e-300):
            raise ValueError("cov must be symmetric")
        lam, U = torch.linalg.eigh(cov)
        if float(lam.min()) < -1e-10 * float(lam.abs().max()):
            raise ValueError(
                f"cov must be positive semi-definite; smallest eigenvalue {float(lam.min()):.3g}"
            )
        self.mean = mean.reshape(d)
        self.cov = cov
        self.eigvals = lam.clamp(min=0)
        self.eigvecs = U
        self.event_shape = tuple(event_shape) if event_shape is not None else (d,)
        if int(torch.tensor(self.event_shape).prod()) != d:
            raise ValueError(f"event_shape {self.event_shape} does not hold {d} entries")

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def to(self, dtype: torch.dtype) -> GaussianOracle:
        return GaussianOracle(self.mean.to(dtype), self.cov.to(dtype), event_shape=self.event_shape)

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.dim)

    def _shape(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.event_shape)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype)
        x = self.mean + (z * self.eigvals.sqrt()) @ self.eigvecs.mT
        return self._shape(x)

    def _gain(self, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        lam = self.eigvals
        den = a[:, None] ** 2 * lam + s[:, None] ** 2
        gain = torch.where(den > 0, a[:, None] * lam / den, 1 / a[:, None])
        post = torch.where(den > 0, lam * s[:, None] ** 2 / den, torch.zeros_like(den))
        return gain, post

    def posterior_mean(
        self, x: Tensor, t: Tensor, process: GaussianProcess, mu: Tensor | None = None
    ):
        """``E[x0 | x_t = x]``; ``x (B, *event)``."""
        t = as_time(t, x)
        a, s = process.alpha(t).to(x.dtype), process.sigma(t).to(x.dtype)
        y = x if mu is None else x - bcast(1 - a, x) * mu
        yf = self._flat(y)
        gain, _ = self._gain(a, s)
        r = (yf - a[:, None] * self.mean) @ self.eigvecs  # coordinates in the eigenbasis
        return self._shape(self.mean + (gain * r) @ self.eigvecs.mT)

    def posterior_cov(self, t: Tensor, process: GaussianProcess) -> Tensor:
        """``Cov[x0 | x_t]`` for each time: ``(B, d, d)`` (independent of ``x_t``)."""
        t = torch.as_tensor(t, dtype=self.mean.dtype).reshape(-1)
        a, s = process.alpha(t).to(self.mean.dtype), process.sigma(t).to(self.mean.dtype)
        _, post = self._gain(a, s)
        return (self.eigvecs * post[:, None, :]) @ self.eigvecs.mT

    def marginal_cov(self, t: float | Tensor, process: GaussianProcess) -> Tensor:
        """``Cov[x_t] = alpha^2 Sigma + sigma^2 I``."""
        a, s = float(process.alpha(t)), float(process.sigma(t))
        return a**2 * self.cov + s**2 * torch.eye(self.dim, dtype=self.cov.dtype)

    def denoiser(self, process: GaussianProcess) -> _GaussianDenoiser:
        return _GaussianDenoiser(self, process)

    def ode_solution(
        self,
        x: Tensor,
        t_from: float | Tensor,
        t_to: float | Tensor,
        process: GaussianProcess,
        *,
        mu: Tensor | None = None,
    ) -> Tensor:
        """Exact probability-flow ODE map ``x_{t_from} -> x_{t_to}`` (teleportation formula)."""
        tf, tt = as_time(t_from, x), as_time(t_to, x)
        af, sf = process.alpha(tf).to(x.dtype), process.sigma(tf).to(x.dtype)
        at, st = process.alpha(tt).to(x.dtype), process.sigma(tt).to(x.dtype)
        y = x if mu is None else x - mu
        m_shift = self.mean if mu is None else None
        yt = self._flat(y) / af[:, None]  # VE frame
        sft, stt = sf / af, st / at
        lam = self.eigvals
        scale = torch.sqrt((lam + stt[:, None] ** 2) / (lam + sft[:, None] ** 2))
        if mu is None:
            out = m_shift + ((yt - m_shift) @ self.eigvecs * scale) @ self.eigvecs.mT
            return self._shape(out * at[:, None])
        mf = self._flat(mu)
        m = self.mean - mf  # data mean of y0 = x0 - mu
        out = m + ((yt - m) @ self.eigvecs * scale) @ self.eigvecs.mT
        return self._shape(out * at[:, None] + mf)

    def log_prob(self, x: Tensor, t: float | Tensor = 0.0, process: GaussianProcess | None = None):
        """Log-density of ``x_t`` (``t = 0``: the data)."""
        cov = self.cov if process is None else self.marginal_cov(t, process)
        a = 1.0 if process is None else float(process.alpha(t))
        dist = torch.distributions.MultivariateNormal(a * self.mean, covariance_matrix=cov)
        return dist.log_prob(self._flat(x))


class _GaussianDenoiser:
    """Exact ``D(x, t, cond) = E[x0 | x_t]`` of a :class:`GaussianOracle`; ``cond`` may carry mu."""

    def __init__(self, oracle: GaussianOracle, process: GaussianProcess) -> None:
        self.oracle = oracle
        self.process = process

    def __call__(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        mu = self.process.check_mu(get_mu(cond), x)
        return self.oracle.posterior_mean(x, as_time(t, x), self.process, mu)
