"""Samplers (contract 3): ``f(denoiser, x_T, grid, *, cond, generator, callback, progress)``.

>>> from sciffusion import solvers
>>> grid = solvers.make_grid(process, 10)            # 10 steps, log-SNR spacing, final denoise
>>> x0 = solvers.sample("dpmpp_2m", denoiser, x_T, grid)

``SOLVERS`` lists every registered sampler with its kind, order and cost; ``sciffusion solvers
list`` prints it.
"""

from ._common import check_grid, per_sample_generators
from .dc_solver import CascadeRatios, DCRatios, dc_solver, fit_dc_ratios
from .ddim import ddim, ddpm
from .deis import DEIS_VARIANTS, deis
from .dpm_solver import (
    dpm_solver,
    dpm_solver_adaptive,
    dpm_solver_fast,
    dpmsolver_multistep,
    fast_orders,
)
from .dpm_solver_v3 import dpm_solver_v3
from .dpmpp import dpmpp_2m, dpmpp_2s, dpmpp_3m, dpmpp_multistep
from .ems import ModelStatistics, estimate_statistics
from .euler import euler, heun
from .flow import flow_euler, flow_heun
from .grids import (
    FINALS,
    SPACINGS,
    custom_grid,
    flow_shift,
    karras,
    make_grid,
    sdedit,
    time_quadratic,
    uniform_log_snr,
    uniform_t,
)
from .masked import categorical, first_hitting, masked_ancestral, maskgit
from .momentum import ghvb, ghvb_coefficients, hb, hb_dpmpp_2m
from .pndm import plms, pndm, spndm
from .registry import SOLVERS, SolverSpec, get_solver, nfe_formula, register, sample
from .sde import SI_DIFFUSIONS, euler_maruyama, sde_dpmpp_2m, sde_dpmsolver, si_sde
from .teleport import fit_gaussian, safe_sigma_skip, teleport, teleport_grid
from .time_shift import TimeShiftDenoiser, time_shift
from .unipc import UNIPC_VARIANTS, unipc

__all__ = [
    "DEIS_VARIANTS",
    "FINALS",
    "SI_DIFFUSIONS",
    "SOLVERS",
    "SPACINGS",
    "UNIPC_VARIANTS",
    "CascadeRatios",
    "DCRatios",
    "ModelStatistics",
    "SolverSpec",
    "TimeShiftDenoiser",
    "categorical",
    "check_grid",
    "custom_grid",
    "dc_solver",
    "ddim",
    "ddpm",
    "deis",
    "dpm_solver",
    "dpm_solver_adaptive",
    "dpm_solver_fast",
    "dpm_solver_v3",
    "dpmpp_2m",
    "dpmpp_2s",
    "dpmpp_3m",
    "dpmpp_multistep",
    "dpmsolver_multistep",
    "estimate_statistics",
    "euler",
    "euler_maruyama",
    "fast_orders",
    "first_hitting",
    "fit_dc_ratios",
    "fit_gaussian",
    "flow_euler",
    "flow_heun",
    "flow_shift",
    "get_solver",
    "ghvb",
    "ghvb_coefficients",
    "hb",
    "hb_dpmpp_2m",
    "heun",
    "karras",
    "make_grid",
    "masked_ancestral",
    "maskgit",
    "nfe_formula",
    "per_sample_generators",
    "plms",
    "pndm",
    "register",
    "safe_sigma_skip",
    "sample",
    "sde_dpmpp_2m",
    "sde_dpmsolver",
    "sdedit",
    "si_sde",
    "spndm",
    "teleport",
    "teleport_grid",
    "time_quadratic",
    "time_shift",
    "uniform_log_snr",
    "uniform_t",
    "unipc",
]


def _two_per_step(n: int) -> int:
    return 2 * n - 1


def _three_per_step(n: int) -> int:
    return 3 * n - 2


def _pndm_nfe(n: int) -> int:
    return min(4 * n - 3, n + 9)


def _plus_one(n: int) -> int:
    return n + 1 if n >= 2 else 1


_S = SolverSpec
for _spec in (
    # -- deterministic (probability-flow ODE) ---------------------------------------------------
    _S("ddim", ddim, "ode", 1, "DDIM (eta=0): first-order exponential integrator"),
    _S("euler", euler, "ode", 1, "Euler on the PF-ODE in sigma/alpha (= DDIM)"),
    _S("heun", heun, "ode", 2, "EDM Heun (Karras et al. 2022, Alg. 1)", nfe=_two_per_step),
    _S("flow_euler", flow_euler, "ode", 1, "flow matching: Euler in t on the velocity"),
    _S(
        "flow_heun",
        flow_heun,
        "ode",
        2,
        "flow matching: Heun in t on the velocity",
        nfe=_two_per_step,
    ),
    _S("dpmpp_2m", dpmpp_2m, "ode", 2, "DPM-Solver++(2M), data prediction"),
    _S(
        "dpmpp_3m",
        dpmpp_3m,
        "ode",
        2,
        "DPM-Solver++(3M) as shipped by diffusers/k-diffusion (halved D2: order 2)",
    ),
    _S(
        "dpmpp_3m_exact",
        dpmpp_3m,
        "ode",
        3,
        "DPM-Solver++(3M) with the Taylor D2 term (order 3)",
        options={"variant": "exact"},
    ),
    _S(
        "dpmpp_2s",
        dpmpp_2s,
        "ode",
        2,
        "DPM-Solver++(2S), singlestep midpoint in lam",
        nfe=_two_per_step,
    ),
    _S(
        "dpmsolver_2m",
        dpmsolver_multistep,
        "ode",
        2,
        "multistep DPM-Solver-2, noise prediction",
        options={"order": 2},
    ),
    _S(
        "dpmsolver_3m",
        dpmsolver_multistep,
        "ode",
        2,
        "multistep DPM-Solver-3 (noise) as shipped (halved D2: order 2)",
        options={"order": 3},
    ),
    _S(
        "dpmsolver_3m_exact",
        dpmsolver_multistep,
        "ode",
        3,
        "multistep DPM-Solver-3 (noise), Lagrange-exact",
        options={"order": 3, "variant": "exact"},
    ),
    _S(
        "dpm_solver_1",
        dpm_solver,
        "ode",
        1,
        "singlestep DPM-Solver-1 (= DDIM)",
        options={"order": 1},
    ),
    _S(
        "dpm_solver_2",
        dpm_solver,
        "ode",
        2,
        "singlestep DPM-Solver-2 (Alg. 1, r1=1/2, noise)",
        nfe=_two_per_step,
        options={"order": 2},
    ),
    _S(
        "dpm_solver_3",
        dpm_solver,
        "ode",
        3,
        "singlestep DPM-Solver-3 (Alg. 2, r=1/3,2/3, noise)",
        nfe=_three_per_step,
        options={"order": 3},
    ),
    _S(
        "dpm_solver_fast",
        dpm_solver_fast,
        "ode",
        3,
        "DPM-Solver-fast: orders 3..3,2,1 by NFE mod 3 on the grid's points",
    ),
    _S(
        "dpm_solver_adaptive",
        dpm_solver_adaptive,
        "ode",
        3,
        "adaptive DPM-Solver-23 (rtol 0.05, atol 0.0078); uses only the grid's ends",
        nfe=None,
    ),
    _S(
        "dpm_solver_adaptive_12",
        dpm_solver_adaptive,
        "ode",
        2,
        "adaptive DPM-Solver-12; uses only the grid's ends",
        nfe=None,
        options={"order": 2},
    ),
    *(
        _S(
            f"unipc_{v}_{p}",
            unipc,
            "ode",
            p + 1,
            f"UniPC-{p} ({v}): UniP-{p} + UniC",
            options={"order": p, "variant": v},
        )
        for v in ("bh1", "bh2")
        for p in (1, 2, 3)
    ),
    *(
        _S(
            f"deis_{v}_{r}",
            deis,
            "ode",
            r + 1,
            f"DEIS {label} r={r}: eps extrapolated through {r + 1} points in {var}",
            options={"r": r, "variant": v},
        )
        for v, label, var in (
            ("t", "tAB", "t"),
            ("rho", "rhoAB", "sigma/alpha"),
            ("logrho", "logrho", "log(sigma/alpha)"),
        )
        for r in (1, 2, 3)
    ),
    _S(
        "pndm",
        pndm,
        "ode",
        2,
        "F-PNDM: 3 pseudo-RK4 steps, then 4-step pseudo-LMS (constant-step AB: order 2 here)",
        nfe=_pndm_nfe,
    ),
    _S(
        "spndm",
        spndm,
        "ode",
        2,
        "S-PNDM: pseudo improved Euler, then 2-step pseudo-LMS",
        nfe=_plus_one,
    ),
    _S(
        "plms",
        plms,
        "ode",
        2,
        "PLMS = diffusers PNDM skip_prk_steps (constant-step AB: order 2 here)",
        nfe=_plus_one,
    ),
    # -- part 2: model statistics, momentum, time shift -------------------------------------------
    _S(
        "dpm_solver_v3",
        dpm_solver_v3,
        "ode",
        2,
        "DPM-Solver-v3 (2M + pseudo-order corrector: order 2) on model statistics (statistics=)",
    ),
    _S(
        "dc_solver",
        dc_solver,
        "ode",
        3,
        "DC-Solver: UniPC-2 with compensated history (ratios=; all 1: UniPC exactly)",
    ),
    _S("hb", hb, "ode", 1, "heavy-ball PLMS-2, beta=0.8 (beta=1: PLMS-2 / DDIM for order=1)"),
    _S("ghvb", ghvb, "ode", 2, "GHVB 1.5: generalised heavy ball, k=2, beta=0.5"),
    _S("hb_dpmpp_2m", hb_dpmpp_2m, "ode", 1, "DPM-Solver++(2M) with heavy-ball momentum, beta=0.8"),
    _S(
        "time_shift",
        time_shift,
        "ode",
        1,
        "Time-Shift sampler on DDIM: model time matched to the sample variance (t > 0.3)",
    ),
    # -- stochastic ------------------------------------------------------------------------------
    _S("ddpm", ddpm, "sde", 0, "DDPM ancestral sampling (DDIM eta=1)"),
    _S("euler_maruyama", euler_maruyama, "sde", 0, "Euler-Maruyama on the reverse SDE (VE frame)"),
    _S("sde_dpmpp_2m", sde_dpmpp_2m, "sde", 0, "SDE-DPM-Solver++(2M), eta=1"),
    _S(
        "sde_dpmsolver_1",
        sde_dpmsolver,
        "sde",
        0,
        "SDE-DPM-Solver-1, noise prediction",
        options={"order": 1},
    ),
    _S(
        "sde_dpmsolver_2",
        sde_dpmsolver,
        "sde",
        0,
        "SDE-DPM-Solver-2 (midpoint), noise prediction",
        options={"order": 2},
    ),
    _S("si_sde", si_sde, "sde", 0, "stochastic-interpolant SDE, v + w(t) score, w='sigma'"),
    # -- masked tokens ---------------------------------------------------------------------------
    _S(
        "masked_ancestral",
        masked_ancestral,
        "discrete",
        0,
        "absorbing diffusion ancestral step (D3PM/MDLM); calls only when a token unmasks",
    ),
    _S(
        "first_hitting",
        first_hitting,
        "discrete",
        0,
        "first-hitting sampler: exact, one token per call (NFE = masked tokens)",
        nfe=None,
    ),
    _S(
        "maskgit",
        maskgit,
        "discrete",
        0,
        "MaskGIT confidence-ordered parallel decoding with remasking",
    ),
):
    register(_spec)
del _spec, _S
