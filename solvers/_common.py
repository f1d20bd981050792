"""What every continuous solver shares: grid checks, the mean shift, noise, progress, callbacks.

Solvers run on ``y = x - mu`` (``mu = 0`` unless the process has a mean), where every Gaussian
process reads ``y_t = alpha y0 + sigma eps``; the model they see is
``D_y(y, t) = D(y + mu, t) - mu``.
Coefficients are computed in float64 (python floats) from the grid, then applied to the sample in
its own dtype. ``lam = log(alpha / sigma)`` is the *half* log-SNR of the DPM-Solver papers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._tensor import check_finite, get_mu
from ..processes import GaussianProcess

__all__ = [
    "Model",
    "Point",
    "Sched",
    "c",
    "check_grid",
    "ddim_step",
    "eps_of",
    "noise_like",
    "per_sample_generators",
    "phi",
    "prepare",
    "report",
    "step_order",
    "steps",
    "uniform_like",
]

Generator = torch.Generator | Sequence[torch.Generator] | None

# Multistep solvers lower their order on the last steps of grids shorter than this (DPM-Solver,
# diffusers' ``lower_order_final``): it stabilises few-step sampling and never touches long grids.
LOWER_ORDER_FINAL_BELOW = 15


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
            f"the time grid must be strictly decreasing (sampling runs from noise, t near 1, to"
            f" data, t = 0); grid[{i}] = {float(g[i]):.6g} <= grid[{i + 1}] ="
            f" {float(g[i + 1]):.6g}. Flip it or build it with make_grid()."
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


class Point(NamedTuple):
    """Schedule values at one time, as python floats (float64): ``t, alpha, sigma, lam``."""

    t: float
    alpha: float
    sigma: float
    lam: float


def point(process: GaussianProcess, t: float) -> Point:
    """The schedule at any time ``t`` (intermediate points of singlestep solvers)."""
    tt = torch.tensor(float(t), dtype=torch.float64)
    lam = 0.5 * float(process.log_snr(tt))
    return Point(float(t), float(process.alpha(tt)), float(process.sigma(tt)), lam)


@dataclass(frozen=True)
class Sched:
    """Per-grid-point schedule values in float64: ``t, alpha, sigma, lam = log(alpha/sigma)``.

    ``sched[i]`` is the :class:`Point` of grid time ``i`` (python floats, for coefficients);
    ``sched.at(t)`` evaluates the process at any other time.
    """

    t: Tensor
    alpha: Tensor
    sigma: Tensor
    lam: Tensor
    process: GaussianProcess | None = None
    _points: list[Point] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pts = [
            Point(*v)
            for v in zip(
                self.t.tolist(),
                self.alpha.tolist(),
                self.sigma.tolist(),
                self.lam.tolist(),
                strict=True,
            )
        ]
        object.__setattr__(self, "_points", pts)

    @staticmethod
    def of(process: GaussianProcess, grid: Tensor) -> Sched:
        a, s = process.alpha(grid), process.sigma(grid)
        lam = 0.5 * process.log_snr(grid)
        return Sched(grid, a.to(torch.float64), s.to(torch.float64), lam.to(torch.float64), process)

    def __len__(self) -> int:
        return self.t.numel()

    def __getitem__(self, i: int) -> Point:
        return self._points[i]

    def at(self, t: float) -> Point:
        if self.process is None:
            raise ValueError(
                "this schedule was built without a process; use Sched.of(process, grid)"
            )
        return point(self.process, t)


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
        d = d.to(y.dtype)  # the sample's dtype is the solver's working precision
        return d if self.mu is None else d - self.mu

    def __call__(self, y: Tensor, i: int) -> Tensor:
        return self.at_time(y, self.sched[i].t)

    def output(self, y: Tensor) -> Tensor:
        return y if self.mu is None else y + self.mu


def prepare(denoiser, x: Tensor, grid, cond: Any, *, min_steps: int = 1, name: str = "solver"):
    """Validate inputs; return ``(y, model, sched)`` for a continuous solver."""
    process = getattr(denoiser, "process", None)
    if not isinstance(process, GaussianProcess):
        raise TypeError(
            f"{name} needs a denoiser with a Gaussian `process` attribute (contract 2); got"
            f" {type(process).__name__}. Wrap networks with sciffusion.Denoiser (token models use"
            " the masked samplers)."
        )
    check_finite(x, f"{name} start x")
    g = check_grid(grid, min_steps=min_steps, name=name)
    mu = process.check_mu(get_mu(cond), x)
    sched = Sched.of(process, g)
    if bool(torch.isnan(sched.lam).any()) or not _lam_ok(sched):
        raise ValueError(
            f"log-SNR is infinite at an inner grid time for the {process.name!r} process"
            f" (times {g.tolist()[:3]}...). Start below t = 1 where alpha = 0 (e.g. t_start ="
            f" {process.t_max}) or end the grid at t = 0 only (final='denoise')."
        )
    model = Model(denoiser, cond, mu, sched, x.dtype)
    y = x if mu is None else x - mu
    return y, model, sched


def _lam_ok(s: Sched) -> bool:
    # -inf is allowed at the first time (alpha = 0: a pure-noise start, first-order step) and
    # +inf at the last (sigma = 0: the final jump to the denoiser's estimate)
    inner = s.lam[1:-1]
    first, last = float(s.lam[0]), float(s.lam[-1])
    return (
        bool(torch.isfinite(inner).all())
        and (math.isfinite(first) or first == -math.inf)
        and (math.isfinite(last) or last == math.inf)
    )


def per_sample_generators(
    seeds: Iterable[int], device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One generator per sample: with them, stochastic samplers give each sample the same noise
    whatever the batch it runs in."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _draw(fn, shape: tuple[int, ...], generator: Generator, dtype, device) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return fn(shape, generator=generator, dtype=dtype, device=device)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(
            f"got {len(gens)} per-sample generators for a batch of {shape[0]}; pass one generator"
            " per sample (sciffusion.solvers.per_sample_generators(seeds)) or a single generator"
        )
    return torch.stack([fn(shape[1:], generator=g, dtype=dtype, device=device) for g in gens])


def noise_like(y: Tensor, generator: Generator) -> Tensor:
    """Standard normal noise shaped like ``y``; per sample when ``generator`` is a sequence."""
    return _draw(torch.randn, tuple(y.shape), generator, y.dtype, y.device)


def uniform_like(
    shape: tuple[int, ...], generator: Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """``U[0, 1)`` draws in float64 (53-bit), per sample when ``generator`` is a sequence."""
    return _draw(torch.rand, tuple(shape), generator, torch.float64, device)


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


# -- numerics shared by the exponential integrators -----------------------------------------------


def phi(k: int, z: float) -> float:
    """``phi_k(z) = sum_j z^j / (j + k)!`` (``phi_0 = e^z``, ``phi_{k+1} = (phi_k - 1/k!) / z``).

    The exponential-integrator functions of Hochbruck & Ostermann (2010); a Taylor series near 0
    avoids the cancellation of the recursion. ``z = +-inf`` is handled (``phi_k(-inf) = 0`` for
    ``k >= 1``).
    """
    if k == 0:
        return math.exp(z)
    if z == -math.inf:
        return 0.0
    if abs(z) < 0.5:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    val = math.expm1(z) / z  # phi_1
    for j in range(1, k):
        val = (val - 1.0 / math.factorial(j)) / z
    return val


def ddim_step(y: Tensor, d: Tensor, ps: Point, pt: Point) -> Tensor:
    """First-order exponential step (DDIM, DPM-Solver-1, DPM-Solver++-1 are all this map).

    ``y_t = (sigma_t / sigma_s) y_s + alpha_t (1 - e^{-h}) D`` with ``h = lam_t - lam_s``: exact at
    ``alpha_s = 0`` (``lam_s = -inf``) and at ``sigma_t = 0`` (``lam_t = inf``:
    ``y_t = alpha_t D``).
    """
    if pt.sigma == 0:
        return d * pt.alpha
    return y * (pt.sigma / ps.sigma) - d * (pt.alpha * math.expm1(ps.lam - pt.lam))


def eps_of(y: Tensor, d: Tensor, p: Point) -> Tensor:
    """Noise estimate ``eps_hat = (y - alpha D) / sigma`` at a point with ``sigma > 0``."""
    return (y - d * p.alpha) / p.sigma


def step_order(i: int, n: int, order: int, *, history: int, lower_order_final: bool) -> int:
    """Order of multistep step ``i`` of ``n``: at most ``history`` (warm-up), and with
    ``lower_order_final`` at most ``n - i`` on grids shorter than ``LOWER_ORDER_FINAL_BELOW``."""
    k = min(order, history)
    if lower_order_final and n < LOWER_ORDER_FINAL_BELOW:
        k = min(k, n - i)
    return max(k, 1)
