"""Registry of samplers: the CLI, benchmarks and error messages read it; tests parametrise over it.

Add a solver with :func:`register` (one line in ``__init__``, next to the others).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "SOLVERS", "SolverSpec", "get_solver", "nfe_formula", "register", "sample"]

KINDS = ("ode", "sde", "discrete")


def _one_per_step(n: int) -> int:
    return n


@dataclass(frozen=True)
class SolverSpec:
    """A registered sampler.

    ``order`` is the theoretical global order of the deterministic endpoint error (0 for
    stochastic and token samplers); ``nfe(n)`` the model calls for an ``n``-step grid ending at
    ``t = 0`` (``None``: data-dependent, e.g. adaptive steps); ``min_steps`` the shortest grid it
    accepts; ``kind`` is ``ode``, ``sde`` or ``discrete``; ``options`` are keyword defaults that
    make a variant (``dpmpp_3m_exact`` is ``dpmpp_3m`` with ``variant="exact"``).
    """

    name: str
    fn: Callable[..., Any]
    kind: str
    order: float
    summary: str
    min_steps: int = 1
    nfe: Callable[[int], int] | None = field(default=_one_per_step)
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, denoiser, x, grid, **kwargs):
        return self.fn(denoiser, x, grid, **{**self.options, **kwargs})


SOLVERS: dict[str, SolverSpec] = {}


def register(spec: SolverSpec) -> SolverSpec:
    if spec.name in SOLVERS:
        raise ValueError(f"solver {spec.name!r} is already registered")
    if spec.kind not in KINDS:
        raise ValueError(f"solver kind must be one of {KINDS}; got {spec.kind!r}")
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


def nfe_formula(spec: SolverSpec) -> str:
    """``nfe(n)`` as text for long grids (``"n"``, ``"2n-1"``, ``"n+9"``; ``"adaptive"``)."""
    if spec.nfe is None:
        return "adaptive"
    a = (spec.nfe(40) - spec.nfe(20)) // 20
    b = spec.nfe(20) - 20 * a
    head = "n" if a == 1 else f"{a}n"
    return head if b == 0 else f"{head}{b:+d}"
