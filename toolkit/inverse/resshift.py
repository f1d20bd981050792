"""ResShift (Yue et al. 2023): residual shifting on its discrete chain, loss and 4-15 step sampler.

The chain ``x_k = x0 + eta_k (y - x0) + kappa sqrt(eta_k) eps`` (``k = 0..T``, ``t_k = k/T`` of
:class:`~sciffusion.processes.ResShift`) has the forward kernel
``q(x_k | x_{k-1}) = N(x_{k-1} + a_k (y - x0), kappa^2 a_k)``, ``a_k = eta_k - eta_{k-1}``, hence
the reverse posterior (Yue et al. 2023, Eq. 7)::

    q(x_{k-1} | x_k, x0) = N((eta_{k-1}/eta_k) x_k + (a_k/eta_k) x0, kappa^2 (eta_{k-1}/eta_k) a_k)

This is *not* the DDPM posterior of the same marginals (the chain's joint law differs), so
ResShift has its own sampler; the network predicts ``x0`` (``Denoiser(prediction="x0")``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._tensor import bcast, check_finite
from ..processes import ResShift
from ..solvers._common import noise_like, report, steps

__all__ = ["resshift_loss", "resshift_posterior", "resshift_sample"]


def _check(process) -> ResShift:
    if not isinstance(process, ResShift):
        raise TypeError(f"needs a denoiser of the ResShift process; got {type(process).__name__}")
    return process


def resshift_posterior(
    process: ResShift, x_k: Tensor, x0: Tensor, k: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance ``(B,)`` of ``q(x_{k-1} | x_k, x0)`` for chain indices ``k (B,) >= 1``."""
    T = process.num_steps
    kk = k.to(torch.float64)
    eta = process.eta(kk / T)
    eta_p = process.eta((kk - 1) / T)
    a = eta - eta_p
    mean = bcast((eta_p / eta).to(x_k.dtype), x_k) * x_k + bcast((a / eta).to(x_k.dtype), x_k) * x0
    var = process.kappa**2 * eta_p / eta * a
    return mean, var


def resshift_loss(
    denoiser, x0: Tensor, y: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    """ResShift's training loss: ``k ~ U{1..T}``, ``x_k`` from the marginal, MSE of ``x0_hat``.

    ``denoiser(x_k, t_k, cond=y)`` returns ``x0_hat`` (a ``Denoiser`` of any prediction type).
    """
    process = _check(denoiser.process)
    if x0.shape != y.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and y {tuple(y.shape)} must have one shape")
    T = process.num_steps
    k = torch.randint(1, T + 1, (x0.shape[0],), generator=generator, device=x0.device)
    t = (k.to(torch.float64) / T).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    xk = process.marginal(x0, t, noise, y)
    return ((denoiser(xk, t, y) - x0) ** 2).mean()


def resshift_sample(
    denoiser,
    y: Tensor,
    *,
    x: Tensor | None = None,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> Tensor:
    """ResShift's ancestral sampler over its ``T`` steps (4 to 15 in the papers).

    Starts from ``x_T = y + kappa sqrt(eta_T) z`` (``kappa * 0.99 * z`` with the default
    ``etas_end``) and draws ``x_{k-1} ~ q(x_{k-1} | x_k, x0_hat)`` (module docstring); the last
    step returns ``x0_hat`` (``eta_0 = 0``). ``cond`` defaults to ``y``.
    """
    process = _check(denoiser.process)
    check_finite(y, "resshift_sample y")
    T = process.num_steps
    if x is None:
        x = process.prior_sample(
            tuple(y.shape), generator=generator, mu=y, dtype=y.dtype, device=y.device
        )
    if x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must have one shape")
    cond = y if cond is None else cond
    B = x.shape[0]
    for j in steps(T, progress, "resshift"):
        k = T - j
        t = torch.full((B,), k / T, dtype=x.dtype, device=x.device)
        x0 = denoiser(x, t, cond)
        mean, var = resshift_posterior(
            process, x, x0, torch.full((B,), k, dtype=torch.long, device=x.device)
        )
        x = mean
        if k > 1:
            x = x + bcast(var.sqrt().to(x.dtype), x) * noise_like(x, generator)
        report(callback, i=j, t=k / T, t_next=(k - 1) / T, x=x, x0=x0)
    return x
