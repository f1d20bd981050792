"""Registry of samplers: the CLI, benchmarks and error messages read it; tests parametrise over it.

Add a solver with :func:`register` (one line next to its definition's import in ``__init__``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SOLVERS", "SolverSpec", "get_solver", "register", "sample"]


@dataclass(frozen=True)
class SolverSpec:
    """A registered sampler.

    ``order`` is the theoretical global order of the deterministic endpoint error (0 for
    stochastic samplers); ``nfe(n)`` the model calls for an ``n``-step grid ending at ``t = 0``;
    ``min_steps`` the shortest grid it accepts; ``kind`` is ``ode``, ``sde`` or ``discrete``.
    """

    name: str
    fn: Callable[..., Any]
    kind: str
    order: float
    summary: str
    min_steps: int = 1
    nfe: Callable[[int], int] = field(default=lambda n: n)
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, denoiser, x, grid, **kwargs):
        return self.fn(denoiser, x, grid, **{**self.options, **kwargs})


SOLVERS: dict[str, SolverSpec] = {}


def register(spec: SolverSpec) -> SolverSpec:
    if spec.name in SOLVERS:
        raise ValueError(f"solver {spec.name!r} is already registered")
    if spec.kind not in ("ode", "sde", "discrete"):
        raise ValueError(f"solver kind must be ode, sde or discrete; got {spec.kind!r}")
    SOLVERS[spec.name] = spec
    return spec


def get_solver(name: str) -> SolverSpec:
    if name not in SOLVERS:
        known = ", ".join(sorted(SOLVERS))
        raise ValueError(f"unknown solver {name!r}; registered solvers: {known}")
    return SOLVERS[name]


def sample(name: str, denoiser, x, grid, **kwargs):
    """Run the registered solver ``name`` (``sample('dpmpp_2m', D, x_T, grid)``)."""
    spec = get_solver(name)
    if len(grid) - 1 < spec.min_steps:
        raise ValueError(
            f"{name} needs at least {spec.min_steps} steps; the grid has {len(grid) - 1}"
        )
    return spec(denoiser, x, grid, **kwargs)
