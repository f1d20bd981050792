"""Active Diffusion Subsampling (ADS, Nolan et al. 2025): choose measurements while sampling.

``N`` particle trajectories per target share the current acquisition mask. Each reverse step is a
DPS-guided deterministic DDIM step; inside a window of steps, every ``k`` steps the action (a set
of entries of a full operator's output: pixels, k-space lines, rows of a sensing matrix) that
maximises an estimate of the measurement entropy under the particle belief is acquired::

    H_a = -(1/N) sum_i log[(1/N) sum_j exp(-||A_a(x0_i - x0_j)||^2 / (2 sigma^2))]

(the particles as an equal-weight isotropic GMM; log-sum-exp with the *minus* sign: the
reference code's ``exp(+d^2)`` overflows in float32). Alternatives: ``variance`` (sum of the
particle variances, "column variance") and ``logdet`` (Gaussian entropy
``log det(sigma^2 I + Cov_a)``, via the ``N x N`` Gram matrix).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..solvers._common import c, check_grid, report, steps
from .combine import compose
from .dc import check_problem
from .linear import Mask
from .operators import LinearOperator, inner

__all__ = ["STRATEGIES", "ADSResult", "action_scores", "ads", "line_actions", "pixel_actions"]

STRATEGIES = ("entropy", "variance", "logdet")


class ADSResult(NamedTuple):
    """Posterior particles ``(B, N, *event)``, their mean ``(B, *event)``, the acquired actions in
    order ``(B, n_acquired)`` (initial ones first) and the final mask ``(B, *out_shape)``."""

    samples: Tensor
    reconstruction: Tensor
    actions: Tensor
    mask: Tensor


def pixel_actions(shape: Sequence[int]) -> Tensor:
    """One action per entry of ``shape``: a bool tensor ``(prod(shape), *shape)``."""
    n = math.prod(shape)
    return torch.eye(n, dtype=torch.bool).reshape(n, *shape)


def line_actions(shape: Sequence[int], dim: int = -1) -> Tensor:
    """One action per index along ``dim`` (k-space columns for ``dim=-1``).

    Returns a bool tensor ``(shape[dim], *shape)``.
    """
    shape = tuple(shape)
    d = dim % len(shape)
    n = shape[d]
    acts = torch.zeros(n, *shape, dtype=torch.bool)
    for k in range(n):
        idx = [slice(None)] * len(shape)
        idx[d] = k
        acts[(k, *idx)] = True
    return acts


def _real_entries(z: Tensor) -> Tensor:
    """``(N, *out)`` -> ``(N, E)`` real entries (complex entries split, real part first)."""
    if z.is_complex():
        z = torch.view_as_real(z).movedim(-1, 1)
    return z.reshape(z.shape[0], -1)


def action_scores(
    z: Tensor,
    actions: Tensor,
    *,
    strategy: str = "entropy",
    sigma: float = 1.0,
) -> Tensor:
    """Score of every action for one target: ``z (N, *out)`` particle measurements (full operator
    applied to the particles' ``x0_hat``), ``actions (n_actions, *out)`` bool; returns
    ``(n_actions,)`` float64 (higher = more informative)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    N = z.shape[0]
    zr = _real_entries(z.to(torch.complex128 if z.is_complex() else torch.float64))
    act = actions.reshape(actions.shape[0], -1).to(torch.float64)
    if zr.shape[1] != act.shape[1] and zr.shape[1] == 2 * act.shape[1]:
        act = torch.cat([act, act], dim=1)  # complex entries: real and imaginary parts
    if zr.shape[1] != act.shape[1]:
        raise ValueError(
            f"actions cover {act.shape[1]} entries but the measurements have {zr.shape[1]}"
        )
    if strategy == "variance":
        return zr.var(0, unbiased=False) @ act.mT
    if strategy == "entropy":
        diff2 = (zr[:, None, :] - zr[None, :, :]) ** 2  # (N, N, E)
        d2 = diff2.reshape(N * N, -1) @ act.mT  # (N*N, n_actions)
        logk = torch.logsumexp(-d2.reshape(N, N, -1) / (2 * sigma**2), dim=1)  # (N, n_actions)
        return math.log(N) - logk.mean(0)
    zc = zr - zr.mean(0)
    gram = torch.einsum("ne,me,ae->anm", zc, zc, act) / (N * sigma**2)
    eye = torch.eye(N, dtype=torch.float64)
    dims = act.sum(1)
    return torch.logdet(eye + gram) + dims * math.log(sigma**2)


def _window(window, n: int) -> tuple[int, int]:
    a, b = window
    fractions = isinstance(a, float) or isinstance(b, float)
    to_step = (lambda v: round(v * n)) if fractions else int
    start, stop = to_step(a), to_step(b)
    if not 0 <= start < stop <= n:
        raise ValueError(
            f"the acquisition window must satisfy 0 <= start < stop <= n_steps ({n}); got"
            f" {window} -> steps [{start}, {stop}). Give step indices or fractions of the grid."
        )
    return start, stop


def ads(
    denoiser,
    full_op: LinearOperator,
    y_full: Tensor,
    actions: Tensor,
    grid: Tensor,
    *,
    budget: int,
    n_particles: int = 16,
    window: tuple[float, float] | tuple[int, int] = (0.0, 1.0),
    select_every: int | None = None,
    strategy: str = "entropy",
    sigma: float = 1.0,
    dps_weight: float = 1.0,
    initial: Sequence[int] | None = None,
    conjugate: Tensor | None = None,
    hard_consistency: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> ADSResult:
    """Active Diffusion Subsampling (Nolan et al. 2025) with a DPS-guided DDIM particle belief.

    Parameters
    ----------
    full_op
        The fully sampled forward model (``Identity`` for pixels, a centred FFT for k-space, any
        linear operator whose output entries are acquired by the actions).
    y_full
        ``(B, *full_op.out_shape)``: what the scanner would return for every entry of each of the
        ``B`` targets (noise included); only acquired entries are ever read.
    actions
        ``(n_actions, *full_op.out_shape)`` bool: the entries each action acquires
        (:func:`pixel_actions`, :func:`line_actions`).
    grid
        Descending times ending at 0 (``solvers.make_grid(process, n)``).
    budget
        Acquisitions to make (besides ``initial``). Spread every ``select_every`` steps (default
        ``(stop - start) // budget``) from the window start; a window is ``(start, stop)`` step
        indices or fractions of the grid.
    strategy
        ``entropy`` (GMM, the paper's), ``variance`` or ``logdet`` (:func:`action_scores`).
    sigma
        GMM / noise standard deviation of the estimate, in measurement units.
    dps_weight
        ``omega`` of the guided step ``x' = DDIM(x, x0_hat) - omega grad ||y - A_k x0_hat||``.
    initial
        Actions acquired before sampling (e.g. the k-space centre).
    conjugate
        Optional ``(n_actions,)`` index map: acquiring ``a`` also retires ``conjugate[a]`` (for real
        images, line ``-k`` carries no new information once ``k`` is known); the budget is then
        checked against the number of free pairs.
    hard_consistency
        Replace the acquired entries of the final particles by the data (``A^+`` projection).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if not isinstance(full_op, LinearOperator):
        raise TypeError(f"ads needs a linear full operator; got {type(full_op).__name__}")
    y_full = check_problem(full_op, y_full, name="ads")
    actions = torch.as_tensor(actions).to(torch.bool)
    if tuple(actions.shape[1:]) != tuple(full_op.out_shape):
        raise ValueError(
            f"actions must be (n_actions, {', '.join(map(str, full_op.out_shape))}); got"
            f" {tuple(actions.shape)}"
        )
    n_act = actions.shape[0]
    initial = [int(a) for a in (initial or [])]
    if any(not 0 <= a < n_act for a in initial) or len(set(initial)) != len(initial):
        raise ValueError(f"initial actions must be distinct indices in [0, {n_act}); got {initial}")
    retired = set(initial)
    if conjugate is not None:
        conjugate = torch.as_tensor(conjugate, dtype=torch.long)
        if conjugate.shape != (n_act,):
            raise ValueError(f"conjugate must map each of the {n_act} actions to an index")
        retired |= {int(conjugate[a]) for a in initial}
    budget = int(budget)
    # with a conjugate map each acquisition retires its whole pair: count the pairs still free
    pairs = {
        frozenset((a, int(conjugate[a])) if conjugate is not None else (a,)) for a in range(n_act)
    }
    available = sum(1 for p in pairs if not p & retired)
    if budget < 0 or budget > available:
        raise ValueError(
            f"budget {budget} exceeds the {available} actions still available ({n_act} actions,"
            f" {len(retired)} acquired or retired by `initial`"
            + (", conjugate pairs counted once" if conjugate is not None else "")
            + "); lower the budget or enlarge the action set"
        )
    if int(n_particles) < 2 and budget > 0:
        raise ValueError(f"ads needs >= 2 particles to estimate entropies; got {n_particles}")
    process = denoiser.process
    if getattr(process, "has_mean", False):
        raise ValueError(f"ads supports mean-free processes; {process.name!r} has a mean")
    g = check_grid(grid, name="ads")
    if float(g[-1]) != 0:
        raise ValueError("ads needs a grid ending at t = 0 (final='denoise')")
    n = g.numel() - 1
    start, stop = _window(window, n)
    every = int(select_every) if select_every else max(1, (stop - start) // max(budget, 1))
    slots = [i for i in range(start, stop, every)][:budget]
    if len(slots) < budget:
        raise ValueError(
            f"the window [{start}, {stop}) with select_every={every} has {len(slots)} acquisition"
            f" steps for a budget of {budget}; widen the window or lower select_every"
        )

    B, N = y_full.shape[0], int(n_particles)
    dtype = y_full.real.dtype if y_full.is_complex() else y_full.dtype
    dev = y_full.device
    mask = torch.zeros(B, *full_op.out_shape, dtype=torch.bool, device=dev)
    for a in initial:
        mask |= actions[a].to(dev)
    taken = torch.zeros(B, n_act, dtype=torch.bool, device=dev)
    for a in retired:
        taken[:, a] = True
    acquired = [torch.full((B,), a, dtype=torch.long, device=dev) for a in initial]

    x = process.prior_sample((B * N, *full_op.in_shape), generator=generator, dtype=dtype)
    x = x.to(dev)
    alpha = process.alpha(g)
    sig = process.sigma(g)
    yrep = y_full.repeat_interleave(N, dim=0)
    for i in steps(n, progress, "ads"):
        t = torch.full((B * N,), float(g[i]), dtype=dtype, device=dev)
        m = mask.repeat_interleave(N, dim=0).to(dtype)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            x0 = denoiser(xx, t)
            r = m * (yrep - full_op.A(x0))
            loss = inner(r, r).clamp(min=1e-30).sqrt().sum()
            (grad,) = torch.autograd.grad(loss, xx)
        x0 = x0.detach()
        if i in slots:
            z = full_op.A(x0).reshape(B, N, *full_op.out_shape)
            new = torch.empty(B, dtype=torch.long, device=dev)
            for b in range(B):
                sc = action_scores(z[b], actions, strategy=strategy, sigma=sigma)
                a = int(torch.argmax(sc.masked_fill(taken[b].cpu(), -math.inf)))
                new[b] = a
                taken[b, a] = True
                if conjugate is not None:
                    taken[b, int(conjugate[a])] = True
                mask[b] |= actions[a].to(dev)
            acquired.append(new)
            report(callback, i=i, t=float(g[i]), acquired=new, scores=sc)
        a_t, s_t, a_n, s_n = (float(v) for v in (alpha[i], sig[i], alpha[i + 1], sig[i + 1]))
        eps = (x - c(a_t, x) * x0) / c(s_t, x)
        x = c(a_n, x) * x0 + c(s_n, x) * eps - c(dps_weight, x) * torch.nan_to_num(grad)
        report(callback, i=i, t=float(g[i]), x=x, x0=x0, mask=mask)

    if hard_consistency:
        m_op = Mask(mask.repeat_interleave(N, 0), per_sample=True, complex=full_op.out_complex)
        op_k = compose(m_op, full_op)
        m = mask.repeat_interleave(N, dim=0).to(dtype)
        x = x + op_k.pinv(m * (yrep - full_op.A(x)), tol=1e-10)
    samples = x.reshape(B, N, *full_op.in_shape)
    acts = torch.stack(acquired, 1) if acquired else torch.zeros(B, 0, dtype=torch.long)
    return ADSResult(samples, samples.mean(1), acts, mask)
