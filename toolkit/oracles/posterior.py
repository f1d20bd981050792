"""Exact posteriors of linear-Gaussian inverse problems ``y = A x0 + n``, ``n ~ N(0, sigma_y^2 I)``.

Gaussian prior ``N(m, S)``: the Kalman update
``K = S A^T (A S A^T + sigma_y^2 I)^-1``, ``mean = m + K (y - A m)``, ``cov = S - K A S``.
A Gaussian-mixture prior gives a Gaussian-mixture posterior with weights
``w_k ∝ pi_k N(y; A m_k, A S_k A^T + sigma_y^2 I)`` and Kalman-updated components.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .gaussian import GaussianOracle
from .gmm import GaussianMixtureOracle

__all__ = ["gmm_linear_posterior", "linear_gaussian_posterior"]


def _kalman(m: Tensor, S: Tensor, A: Tensor, sigma_y: float, y: Tensor):
    if A.ndim != 2 or A.shape[1] != m.shape[-1]:
        raise ValueError(f"A must be (m, {m.shape[-1]}); got {tuple(A.shape)}")
    if y.shape != (A.shape[0],):
        raise ValueError(
            f"y must be ({A.shape[0]},) for A of shape {tuple(A.shape)}; got {tuple(y.shape)}"
        )
    Sy = A @ S @ A.mT + sigma_y**2 * torch.eye(A.shape[0], dtype=S.dtype)
    K = torch.linalg.solve(Sy, A @ S).mT
    mean = m + K @ (y - A @ m)
    cov = S - K @ A @ S
    return mean, 0.5 * (cov + cov.mT), Sy


def linear_gaussian_posterior(
    mean: Tensor, cov: Tensor, A: Tensor, sigma_y: float, y: Tensor
) -> GaussianOracle:
    """Posterior ``p(x0 | y)`` for a Gaussian prior, as a :class:`GaussianOracle`."""
    m, c, _ = _kalman(
        torch.as_tensor(mean), torch.as_tensor(cov), torch.as_tensor(A), sigma_y, torch.as_tensor(y)
    )
    return GaussianOracle(m, c)


def gmm_linear_posterior(
    prior: GaussianMixtureOracle, A: Tensor, sigma_y: float, y: Tensor
) -> GaussianMixtureOracle:
    """Posterior ``p(x0 | y)`` for a Gaussian-mixture prior, itself a mixture."""
    A, y = torch.as_tensor(A, dtype=prior.means.dtype), torch.as_tensor(y, dtype=prior.means.dtype)
    logw, means, covs = [], [], []
    for k in range(prior.n_components):
        mk, ck, Sy = _kalman(prior.means[k], prior.covs[k], A, sigma_y, y)
        ev = torch.distributions.MultivariateNormal(A @ prior.means[k], covariance_matrix=Sy)
        logw.append(torch.log(prior.weights[k]) + ev.log_prob(y))
        means.append(mk)
        covs.append(ck)
    w = torch.softmax(torch.stack(logw), 0)
    return GaussianMixtureOracle(
        w, torch.stack(means), torch.stack(covs), event_shape=prior.event_shape
    )
