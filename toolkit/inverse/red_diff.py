"""RED-Diff: variational posterior sampling by regularisation with a denoiser (Mardani et al. 2024).

Written from the paper (the reference code is under a non-commercial licence and was not copied).
RED-Diff fits a point estimate ``mu`` (a Dirac variational posterior) by stochastic optimisation
of (Eq. 7 of the paper)::

    ||y - A(mu)||^2 / (2 sigma_v^2)
        + lam E_{t, eps}[ w(t) ||eps_hat(alpha_t mu + sigma_t eps, t) - eps||^2 ]

The regulariser's gradient is taken score-distillation style, *without* differentiating the
denoiser: ``grad_mu = lam w(t) alpha_t (eps_hat - eps)`` as an ``sg``-surrogate (Eq. 8-9 of the
paper). Time runs descending (coarse to fine), one ``eps`` per step, ``mu_0 = A^+ y``, Adam.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._tensor import bcast, check_finite
from ..solvers._common import check_grid, steps
from .dc import check_problem
from .operators import LinearOperator, Operator, inner

__all__ = ["WEIGHTINGS", "red_diff"]

WEIGHTINGS = ("linear", "sqrt", "square", "log", "clip", "const")


def _weight(kind: str, snr_inv_sqrt: Tensor) -> Tensor:
    """``w(t)`` as a function of ``sigma/alpha = 1/sqrt(SNR)``."""
    r = snr_inv_sqrt
    if kind == "linear":
        return r
    if kind == "sqrt":
        return r.sqrt()
    if kind == "square":
        return r**2
    if kind == "log":
        return torch.log1p(r)
    if kind == "clip":
        return r.clamp(max=1.0)
    return torch.ones_like(r)


def red_diff(
    denoiser,
    op: Operator,
    y: Tensor,
    grid: Tensor,
    *,
    lam: float = 0.25,
    weighting: str = "linear",
    obs_weight: float = 1.0,
    lr: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
    x_init: Tensor | None = None,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> Tensor:
    """RED-Diff (Mardani et al. 2024, Alg. 1): a MAP-like point estimate, not posterior samples.

    For each time ``t`` of the descending ``grid`` (times with ``sigma = 0`` are skipped) draw
    ``eps``, form ``x_t = alpha mu + sigma eps`` (plus ``(1 - alpha) mu_proc`` for processes with a
    mean), call the denoiser **under no_grad** and take one Adam step on::

        obs_weight * mean((y - A(mu))^2) / 2 + lam * w(t) * mean(sg(eps_hat - eps) * mu)   (Eq. 9)

    with ``w(t)`` from ``weighting`` as a function of ``sigma/alpha`` (``linear``: ``sigma/alpha``,
    the paper's SNR weighting; ``sqrt``, ``square``, ``log`` = ``log(1 + .)``, ``clip`` =
    ``min(., 1)``, ``const``). Means are per sample over its entries, as the paper's
    implementation-independent form; ``lam`` is therefore resolution dependent.

    Parameters
    ----------
    y
        Measurements ``(B, *op.out_shape)``.
    grid
        Descending times, e.g. ``torch.linspace(1, 0, 1001)[:-1]`` or ``solvers.make_grid``.
    x_init
        ``mu_0``; default ``A^+ y`` (linear operators) and required otherwise.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {WEIGHTINGS}")
    if not lr > 0 or lam < 0:
        raise ValueError(f"need lr > 0 and lam >= 0; got lr={lr}, lam={lam}")
    y = check_problem(op, y, name="red_diff")
    g = check_grid(grid, name="red_diff")
    process = denoiser.process
    if x_init is None:
        if not isinstance(op, LinearOperator):
            raise ValueError("red_diff with a non-linear operator needs x_init (mu_0)")
        x_init = op.pinv(y)
    op.check_input(x_init)
    check_finite(x_init, "red_diff x_init")
    from .._tensor import get_mu

    mu_proc = process.check_mu(get_mu(cond), x_init)
    mu = x_init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=lr, betas=betas)
    n_obs = math.prod(op.out_shape) * (2 if op.out_complex else 1)
    n_in = math.prod(op.in_shape)
    times = [float(v) for v in g if float(process.sigma(float(v))) > 0]
    for k in steps(len(times), progress, "red_diff"):
        t = times[k]
        tt = torch.full((mu.shape[0],), t, dtype=mu.dtype, device=mu.device)
        a = process.alpha(torch.tensor(t, dtype=torch.float64))
        s = process.sigma(torch.tensor(t, dtype=torch.float64))
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        with torch.no_grad():
            xt = float(a) * mu + float(s) * eps
            if mu_proc is not None:
                xt = xt + (1 - float(a)) * mu_proc
            x0 = denoiser(xt, tt, cond)
            ref = mu if mu_proc is None else mu - mu_proc
            x0r = x0 if mu_proc is None else x0 - mu_proc
            eps_hat = (xt - (0 if mu_proc is None else mu_proc) - float(a) * x0r) / float(s)
            w = float(_weight(weighting, s / a))
        del ref
        opt.zero_grad(set_to_none=True)
        r = y - op.A(mu)
        fit = obs_weight * 0.5 * inner(r, r) / n_obs
        reg = lam * w * inner(eps_hat - eps, mu) / n_in
        (fit + reg).sum().backward()
        opt.step()
        if callback is not None:
            callback({"i": k, "t": t, "x0": mu.detach(), "fit": fit.detach(), "w": w})
    _ = bcast
    return mu.detach()
