"""What every continuous solver shares: grid checks, the mean shift, noise, progress, callbacks.

Solvers run on ``y = x - mu`` (``mu = 0`` unless the process has a mean), where every Gaussian
process reads ``y_t = alpha y0 + sigma eps``; the model they see is ``D_y(y, t) = D(y + mu, t) - mu``.
Coefficients are computed in float64 from the grid, then cast to the sample dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._tensor import check_finite, get_mu
from ..processes import GaussianProcess

__all__ = [
    "Model",
    "Sched",
    "check_grid",
    "noise_like",
    "per_sample_generators",
    "prepare",
    "steps",
]

Generator = torch.Generator | Sequence[torch.Generator] | None


def check_grid(
    grid: Tensor | Sequence[float], *, min_steps: int = 1, name: str = "solver"
) -> Tensor:
    """Validate a time grid: 1-D, finite, strictly decreasing, inside [0, 1]. Returned unchanged
    (as float64); nothing is clipped or rounded."""
    g = torch.as_tensor(grid, dtype=torch.float64).detach().cpu()
    if g.ndim != 1 or g.numel() < 2:
        raise ValueError(
            f"a time grid must be a 1-D tensor of at least 2 times; got shape {tuple(g.shape)}."
            " Build one with sciffusion.solvers.make_grid(process, n)."
        )
    if not bool(torch.isfinite(g).all()):
        raise ValueError("the time grid contains NaN or inf")
    d = g[1:] - g[:-1]
    if bool((d >= 0).any()):
        i = int(torch.nonzero(d >= 0)[0])
        raise ValueError(
            f"the time grid must be strictly decreasing (sampling runs from noise, t near 1, to data,"
            f" t = 0); grid[{i}] = {float(g[i]):.6g} <= grid[{i + 1}] = {float(g[i + 1]):.6g}."
            " Flip it or build it with make_grid()."
        )
    if float(g.min()) < 0 or float(g.max()) > 1:
        raise ValueError(
            f"times must lie in [0, 1]; got range [{float(g.min()):.6g}, {float(g.max()):.6g}]"
        )
    if g.numel() - 1 < min_steps:
        raise ValueError(
            f"{name} needs at least {min_steps} steps (a grid of {min_steps + 1} times); got"
            f" {g.numel() - 1}"
        )
    return g


@dataclass(frozen=True)
class Sched:
    """Per-grid-point schedule values in float64: ``t, alpha, sigma, lam = log(alpha/sigma)``."""

    t: Tensor
    alpha: Tensor
    sigma: Tensor
    lam: Tensor

    @staticmethod
    def of(process: GaussianProcess, grid: Tensor) -> Sched:
        a, s = process.alpha(grid), process.sigma(grid)
        lam = 0.5 * process.log_snr(grid)
        return Sched(grid, a, s, lam)

    def __len__(self) -> int:
        return self.t.numel()


class Model:
    """``D_y(y, i)``: the denoiser at grid point ``i`` in the mean-shifted frame, counting calls."""

    def __init__(self, denoiser, cond: Any, mu: Tensor | None, sched: Sched, dtype: torch.dtype):
        self.denoiser = denoiser
        self.cond = cond
        self.mu = mu
        self.sched = sched
        self.dtype = dtype
        self.nfe = 0

    def at_time(self, y: Tensor, t: float | Tensor) -> Tensor:
        self.nfe += 1
        x = y if self.mu is None else y + self.mu
        tt = torch.as_tensor(t, dtype=self.dtype, device=y.device).expand(y.shape[0])
        d = self.denoiser(x, tt, self.cond)
        if d.shape != y.shape:
            raise ValueError(
                f"the denoiser returned shape {tuple(d.shape)} for input {tuple(y.shape)}"
            )
        return d if self.mu is None else d - self.mu

    def __call__(self, y: Tensor, i: int) -> Tensor:
        return self.at_time(y, self.sched.t[i])

    def output(self, y: Tensor) -> Tensor:
        return y if self.mu is None else y + self.mu


def prepare(denoiser, x: Tensor, grid, cond: Any, *, min_steps: int = 1, name: str = "solver"):
    """Validate inputs; return ``(y, model, sched)`` for a continuous solver."""
    process = getattr(denoiser, "process", None)
    if not isinstance(process, GaussianProcess):
        raise TypeError(
            f"{name} needs a denoiser with a Gaussian `process` attribute (contract 2); got"
            f" {type(process).__name__}. Wrap networks with sciffusion.Denoiser."
        )
    check_finite(x, f"{name} start x")
    g = check_grid(grid, min_steps=min_steps, name=name)
    mu = process.check_mu(get_mu(cond), x)
    sched = Sched.of(process, g)
    if not bool(torch.isfinite(sched.lam[:-1]).all()) and not _lam_ok(sched):
        raise ValueError(
            f"log-SNR is infinite at an inner grid time for the {process.name!r} process"
            f" (times {g.tolist()[:3]}...). Start below t = 1 where alpha = 0 (e.g. t_start ="
            f" {process.t_max}) or use a solver that works in t (flow Euler)."
        )
    model = Model(denoiser, cond, mu, sched, x.dtype)
    y = x if mu is None else x - mu
    return y, model, sched


def _lam_ok(s: Sched) -> bool:
    # -inf at the very first time (alpha = 0: pure noise start) is allowed for first-order steps
    return bool(torch.isfinite(s.lam[1:-1]).all()) and float(s.lam[0]) == -math.inf


def per_sample_generators(
    seeds: Iterable[int], device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One generator per sample: with them, stochastic samplers give each sample the same noise
    whatever the batch it runs in."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def noise_like(y: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise shaped like ``y``; per sample when ``generator`` is a sequence."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    gens = list(generator)
    if len(gens) != y.shape[0]:
        raise ValueError(f"got {len(gens)} per-sample generators for a batch of {y.shape[0]}")
    return torch.stack(
        [torch.randn(y.shape[1:], generator=g, dtype=y.dtype, device=y.device) for g in gens]
    )


def steps(n: int, progress: bool, desc: str) -> Iterator[int]:
    """``range(n)``, with a progress bar when asked."""
    if not progress:
        yield from range(n)
        return
    from rich.progress import track

    yield from track(range(n), description=desc, transient=True)


def report(callback: Callable[[dict], Any] | None, **info: Any) -> None:
    if callback is not None:
        callback(info)


def c(v: Tensor | float, like: Tensor) -> Tensor:
    """A float64 scalar coefficient as a 0-d tensor in the sample's dtype/device."""
    return torch.as_tensor(v, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
