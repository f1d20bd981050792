"""Analytic teleportation (Wang & Vastola 2024): skip the early steps with the exact Gaussian flow.

At high noise every data distribution looks like its Gaussian fit ``N(m, Sigma)``, whose PF-ODE is
solved in closed form. In the VE frame ``x~ = y / alpha``, ``s = sigma / alpha``, with
``Sigma = U diag(lam) U^T`` (Eq. 8 of the paper)::

    x~(s) = m + U diag(sqrt((lam + s^2) / (lam + s_T^2))) U^T (x~_T - m)

:func:`teleport` jumps from ``grid[0]`` to ``grid[1]`` with that map (no model call) and hands the
rest of the grid to any solver. Rule of thumb (docs/notes 02, B3): ``s_skip^2 >~ 5-10x`` the largest
data variance, where the Gaussian approximation is still accurate (:func:`safe_sigma_skip`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._tensor import get_mu
from ..oracles import GaussianOracle
from ..processes import GaussianProcess
from .grids import make_grid
from .registry import get_solver

__all__ = ["fit_gaussian", "safe_sigma_skip", "teleport", "teleport_grid"]


def fit_gaussian(samples: Tensor, *, shrinkage: float = 0.0) -> GaussianOracle:
    """Mean and covariance of data samples ``(N, *event)`` as a :class:`GaussianOracle` (float64).

    ``shrinkage`` in [0, 1) blends the covariance with ``tr(C)/d I`` (for ``N`` below ``d``).
    """
    if samples.ndim < 2 or samples.shape[0] < 2:
        raise ValueError(f"need at least 2 samples (N, *event); got shape {tuple(samples.shape)}")
    if not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage must lie in [0, 1); got {shrinkage}")
    flat = samples.reshape(samples.shape[0], -1).to(torch.float64)
    mean = flat.mean(0)
    cov = torch.cov(flat.T).reshape(flat.shape[1], flat.shape[1])
    if shrinkage > 0:
        d = cov.shape[0]
        cov = (1 - shrinkage) * cov + shrinkage * torch.trace(cov) / d * torch.eye(d).double()
    return GaussianOracle(mean, 0.5 * (cov + cov.T), event_shape=tuple(samples.shape[1:]))


def safe_sigma_skip(gaussian: GaussianOracle, *, factor: float = 10.0) -> float:
    """``s_skip = sqrt(factor * largest data variance)`` (the rule of thumb above)."""
    return math.sqrt(factor * float(gaussian.eigvals.max()))


def teleport_grid(
    process: GaussianProcess,
    n: int,
    *,
    sigma_skip: float,
    t_start: float | None = None,
    spacing: str = "log_snr",
    **grid_kwargs,
) -> Tensor:
    """``[t_start, t_skip, ...]``: the teleport interval, then an ``n``-step grid from ``t_skip``.

    ``sigma_skip`` is in VE units, ``s = sigma / alpha`` (``t_skip`` solves ``s(t_skip) =
    sigma_skip`` exactly through the process's log-SNR inverse).
    """
    if not sigma_skip > 0:
        raise ValueError(f"sigma_skip must be positive; got {sigma_skip}")
    ts = process.t_max if t_start is None else float(t_start)
    t_skip = float(
        process.t_of_log_snr(torch.tensor(-2 * math.log(sigma_skip), dtype=torch.float64))
    )
    if not t_skip < ts:
        s_start = float(process.sigma(ts) / process.alpha(ts))
        raise ValueError(
            f"sigma_skip={sigma_skip} is not below the start's noise level s={s_start:.4g}"
            f" (t_start={ts}); pick a smaller sigma_skip"
        )
    rest = make_grid(process, n, spacing, t_start=t_skip, **grid_kwargs)
    return torch.cat([torch.tensor([ts], dtype=torch.float64), rest])


def teleport(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    gaussian: GaussianOracle,
    solver: str = "unipc_bh2_2",
    cond=None,
    generator=None,
    callback=None,
    progress: bool = False,
    **knobs,
) -> Tensor:
    """Exact Gaussian PF-ODE jump ``grid[0] -> grid[1]``, then ``solver`` on ``grid[1:]``.

    Parameters
    ----------
    gaussian
        The data's Gaussian fit (:func:`fit_gaussian`, or a known :class:`GaussianOracle`).
    solver
        A registered solver name (``sciffusion.solvers.SOLVERS``); ``knobs`` go to it.
    grid
        At least 3 times: the teleport interval and one solver step (see :func:`teleport_grid`).
    """
    process = getattr(denoiser, "process", None)
    if not isinstance(process, GaussianProcess):
        raise TypeError("teleport needs a denoiser with a Gaussian process")
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.ndim != 1 or g.numel() < 3:
        raise ValueError(
            "teleport needs a grid [t_start, t_skip, ...] with at least one solver step after the"
            " jump; build it with teleport_grid(process, n, sigma_skip=...)"
        )
    if gaussian.dim != x[0].numel():
        raise ValueError(
            f"the Gaussian fit has dimension {gaussian.dim}; samples have {x[0].numel()} entries"
        )
    mu = process.check_mu(get_mu(cond), x)
    gauss = gaussian
    if gaussian.mean.dtype != x.dtype or gaussian.mean.device != x.device:
        gauss = GaussianOracle(
            gaussian.mean.to(device=x.device, dtype=x.dtype),
            gaussian.cov.to(device=x.device, dtype=x.dtype),
            event_shape=gaussian.event_shape,
        )
    event = gauss.event_shape
    flat = x.reshape(x.shape[0], *event)
    jumped = gauss.ode_solution(
        flat, float(g[0]), float(g[1]), process, mu=None if mu is None else mu.reshape(flat.shape)
    ).reshape(x.shape)
    spec = get_solver(solver)
    return spec(
        denoiser,
        jumped,
        g[1:],
        cond=cond,
        generator=generator,
        callback=callback,
        progress=progress,
        **knobs,
    )
