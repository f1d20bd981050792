"""Samplers (contract 3): stateless ``f(denoiser, x_T, grid, *, cond, generator, callback, progress)``.

>>> from sciffusion import solvers
>>> grid = solvers.make_grid(process, 10)            # 10 steps, log-SNR spacing, final denoise
>>> x0 = solvers.sample("dpmpp_2m", denoiser, x_T, grid)
"""

from ._common import check_grid, per_sample_generators
from .ddim import ddim, ddpm
from .dpmpp import dpmpp_2m
from .euler import euler, heun
from .grids import (
    SPACINGS,
    custom_grid,
    flow_shift,
    karras,
    make_grid,
    time_quadratic,
    uniform_log_snr,
    uniform_t,
)
from .registry import SOLVERS, SolverSpec, get_solver, register, sample

__all__ = [
    "SOLVERS",
    "SPACINGS",
    "SolverSpec",
    "check_grid",
    "custom_grid",
    "ddim",
    "ddpm",
    "dpmpp_2m",
    "euler",
    "flow_shift",
    "get_solver",
    "heun",
    "karras",
    "make_grid",
    "per_sample_generators",
    "register",
    "sample",
    "time_quadratic",
    "uniform_log_snr",
    "uniform_t",
]

register(SolverSpec("ddim", ddim, "ode", 1, "DDIM (eta=0): first-order exponential integrator"))
register(SolverSpec("euler", euler, "ode", 1, "Euler on the PF-ODE in sigma/alpha"))
register(SolverSpec("heun", heun, "ode", 2, "EDM Heun (2 NFE/step)", nfe=lambda n: 2 * n - 1))
register(SolverSpec("dpmpp_2m", dpmpp_2m, "ode", 2, "DPM-Solver++(2M), data prediction"))
register(SolverSpec("ddpm", ddpm, "sde", 0, "DDPM ancestral sampling (DDIM eta=1)"))
