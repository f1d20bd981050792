"""Exact Gaussian-mixture data: samples, the exact denoiser of every Gaussian process, posteriors.

``x0 ~ sum_k pi_k N(m_k, Sigma_k)``. Noised, each component stays Gaussian, so with
``y = alpha x0 + sigma eps`` (``y = x - (1 - alpha) mu`` for processes with a mean)::

    p(k | x_t)  ∝ pi_k N(y; alpha m_k, alpha^2 Sigma_k + sigma^2 I)         (log-sum-exp)
    E[x0 | x_t] = sum_k p(k | x_t) [m_k + alpha Sigma_k (alpha^2 Sigma_k + sigma^2 I)^-1
                                          (y - alpha m_k)]
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time, bcast, get_mu
from ..processes import GaussianProcess

__all__ = ["GaussianMixtureOracle", "toy_gmm"]


class GaussianMixtureOracle:
    """Mixture with ``weights (K,)``, ``means (K, d)`` and ``covs`` full ``(K, d, d)`` or diagonal
    variances ``(K, d)``; samples are laid out as ``event_shape`` (default ``(d,)``)."""

    def __init__(
        self,
        weights: Tensor,
        means: Tensor,
        covs: Tensor,
        *,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        means = torch.as_tensor(means)
        weights = torch.as_tensor(weights, dtype=means.dtype)
        covs = torch.as_tensor(covs, dtype=means.dtype)
        if means.ndim != 2:
            raise ValueError(f"means must be (K, d); got {tuple(means.shape)}")
        K, d = means.shape
        if weights.shape != (K,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be ({K},) non-negative with positive sum")
        if covs.shape == (K, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (K, d, d):
            raise ValueError(
                f"covs must be ({K}, {d}, {d}) or diagonal ({K}, {d}); got {tuple(covs.shape)}"
            )
        lam, U = torch.linalg.eigh(covs)
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = covs
        self.eigvals = lam.clamp(min=0)  # (K, d)
        self.eigvecs = U  # (K, d, d)
        self.event_shape = tuple(event_shape) if event_shape is not None else (d,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def to(self, dtype: torch.dtype) -> GaussianMixtureOracle:
        return GaussianMixtureOracle(
            self.weights.to(dtype),
            self.means.to(dtype),
            self.covs.to(dtype),
            event_shape=self.event_shape,
        )

    def _flat(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.dim)

    def _shape(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.event_shape)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, return_labels: bool = False
    ):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        z = z * self.eigvals[k].sqrt()
        x = self.means[k] + torch.einsum("nij,nj->ni", self.eigvecs[k], z)
        x = self._shape(x)
        return (x, k) if return_labels else x

    # -- exact posteriors --------------------------------------------------------------------
    def _noised(self, x: Tensor, t: Tensor, process: GaussianProcess, mu: Tensor | None):
        a, s = process.alpha(t).to(x.dtype), process.sigma(t).to(x.dtype)
        y = x if mu is None else x - bcast(1 - a, x) * mu
        y = self._flat(y)
        var = a[:, None, None] ** 2 * self.eigvals[None] + s[:, None, None] ** 2  # (B, K, d)
        r = torch.einsum(
            "bkd,kde->bke", y[:, None, :] - a[:, None, None] * self.means[None], self.eigvecs
        )
        return a, s, y, var, r

    def log_responsibilities(
        self, x: Tensor, t: Tensor | float, process: GaussianProcess, mu: Tensor | None = None
    ) -> Tensor:
        """``log p(k | x_t)``, shape ``(B, K)``."""
        t = as_time(t, x)
        _, _, _, var, r = self._noised(x, t, process, mu)
        logp = -0.5 * (
            (r**2 / var).sum(-1) + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi)
        )
        logp = logp + torch.log(self.weights)
        return logp - torch.logsumexp(logp, dim=1, keepdim=True)

    def posterior_mean(
        self, x: Tensor, t: Tensor | float, process: GaussianProcess, mu: Tensor | None = None
    ) -> Tensor:
        """``E[x0 | x_t = x]``."""
        t = as_time(t, x)
        a, _, _, var, r = self._noised(x, t, process, mu)
        logp = -0.5 * ((r**2 / var).sum(-1) + torch.log(var).sum(-1)) + torch.log(self.weights)
        w = torch.softmax(logp, dim=1)  # (B, K)
        gain = a[:, None, None] * self.eigvals[None] / var  # (B, K, d)
        comp = self.means[None] + torch.einsum("bke,kde->bkd", gain * r, self.eigvecs)
        return self._shape((w[..., None] * comp).sum(1))

    def log_prob(self, x: Tensor, t: float | Tensor = 0.0, process: GaussianProcess | None = None):
        """Log-density of ``x_t`` (``process=None``: of the data)."""
        if process is None:
            from ..processes import VE

            process, t = VE(), 0.0
        t = as_time(t, x)
        _, _, _, var, r = self._noised(x, t, process, None)
        logp = -0.5 * (
            (r**2 / var).sum(-1) + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi)
        )
        return torch.logsumexp(logp + torch.log(self.weights), dim=1)

    def assign(self, x0: Tensor) -> Tensor:
        """Most likely component of each clean sample, shape ``(B,)``."""
        logp = -0.5 * self._mahalanobis_logdet(self._flat(x0)) + torch.log(self.weights)
        return logp.argmax(dim=1)

    def _mahalanobis_logdet(self, x: Tensor) -> Tensor:
        var = self.eigvals.clamp(min=1e-300)
        r = torch.einsum("bkd,kde->bke", x[:, None, :] - self.means[None], self.eigvecs)
        return (r**2 / var).sum(-1) + torch.log(var).sum(-1)

    def mode_weights(self, x0: Tensor) -> Tensor:
        """Fraction of samples assigned to each component, ``(K,)``."""
        k = self.assign(x0)
        return torch.bincount(k, minlength=self.n_components).to(self.weights.dtype) / len(k)

    def mode_weight_tv(self, x0: Tensor) -> float:
        """Total variation ``0.5 sum |w_hat - pi|`` between mode occupancy and the weights."""
        return 0.5 * float((self.mode_weights(x0) - self.weights).abs().sum())

    def denoiser(self, process: GaussianProcess) -> _GMMDenoiser:
        return _GMMDenoiser(self, process)


class _GMMDenoiser:
    """Exact ``D(x, t, cond)`` of a :class:`GaussianMixtureOracle`."""

    def __init__(self, oracle: GaussianMixtureOracle, process: GaussianProcess) -> None:
        self.oracle = oracle
        self.process = process

    def __call__(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        mu = self.process.check_mu(get_mu(cond), x)
        return self.oracle.posterior_mean(x, as_time(t, x), self.process, mu)


def toy_gmm(
    dim: int = 2,
    kind: str = "smooth",
    *,
    n_components: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> GaussianMixtureOracle:
    """The benchmark mixtures of docs/notes: ``K`` diagonal Gaussians with weights ∝ U[0.5, 1.5].

    ``dim = 2``: means on the unit circle; otherwise means ~ U[-1, 1]^d. ``smooth``: stds
    U[0.15, 0.3]; ``sharp``: stds U[0.03, 0.2].
    """
    ranges = {"smooth": (0.15, 0.3), "sharp": (0.03, 0.2)}
    if kind not in ranges:
        raise ValueError(f"unknown mixture kind {kind!r}; choose 'smooth' or 'sharp'")
    g = torch.Generator().manual_seed(seed)
    K = n_components
    if dim == 2:
        ang = 2 * math.pi * torch.arange(K, dtype=dtype) / K
        means = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    else:
        means = 2 * torch.rand(K, dim, generator=g, dtype=dtype) - 1
    lo, hi = ranges[kind]
    stds = lo + (hi - lo) * torch.rand(K, dim, generator=g, dtype=dtype)
    weights = 0.5 + torch.rand(K, generator=g, dtype=dtype)
    return GaussianMixtureOracle(weights, means, stds**2)
