"""Inverse problems (contracts 4-5): operators, data consistency, posterior samplers.

>>> from sciffusion import inverse, solvers
>>> op = inverse.FFTMask(mask) @ inverse.RealToComplex((H, W))       # real image -> k-space
>>> D_y = inverse.pigdm(denoiser, op, y, sigma_y=0.01)               # a guided denoiser
>>> x0 = solvers.ddpm(D_y, x_T, solvers.make_grid(process, 100))    # any data-prediction solver

Operators: ``Identity, Mask, FFTMask, Blur, Downsample, Matrix, Stacked, RealToComplex,
ChannelsToComplex, Nonlinear`` and ``compose`` / ``@``; registry ``OPERATORS``.
Denoiser transforms: ``hard_dc, prox_dc, grad_dc, dps, pigdm, conditional_dc, with_condition``.
Algorithms: ``ddrm``, ``twisted_smc``, ``fk_steering``, ``fk_corrector``, ``red_diff``, ``ads``,
``mr_sampler``, ``ir_sde_euler_maruyama``, ``resshift_sample``; losses ``ir_sde_loss``,
``resshift_loss``. Closed-form problems for tests and benchmarks live in :mod:`.toys`.
"""

from .ads import ADSResult, action_scores, ads, line_actions, pixel_actions
from .combine import (
    ChannelsToComplex,
    Composed,
    ComposedNonlinear,
    Nonlinear,
    RealToComplex,
    Stacked,
    compose,
)
from .dc import conditional_dc, dps, grad_dc, hard_dc, pigdm, prox_dc, with_condition
from .ddrm import ddrm
from .fourier import FFTMask, fft_c, ifft_c
from .linear import Blur, Downsample, Identity, Mask, Matrix, gaussian_kernel
from .mean_reverting import (
    ir_sde_euler_maruyama,
    ir_sde_loss,
    ir_sde_posterior,
    mr_grid,
    mr_sampler,
)
from .operators import OPERATORS, LinearOperator, Operator, cg, inner, register_operator
from .red_diff import red_diff
from .resshift import resshift_loss, resshift_posterior, resshift_sample
from .smc import (
    SMCResult,
    annealed_target,
    cfg_target,
    effective_sample_size,
    fk_corrector,
    fk_steering,
    product_target,
    resample,
    systematic_resample,
    twisted_smc,
)

__all__ = [
    "OPERATORS",
    "ADSResult",
    "Blur",
    "ChannelsToComplex",
    "Composed",
    "ComposedNonlinear",
    "Downsample",
    "FFTMask",
    "Identity",
    "LinearOperator",
    "Mask",
    "Matrix",
    "Nonlinear",
    "Operator",
    "RealToComplex",
    "SMCResult",
    "Stacked",
    "action_scores",
    "ads",
    "annealed_target",
    "cfg_target",
    "cg",
    "compose",
    "conditional_dc",
    "ddrm",
    "dps",
    "effective_sample_size",
    "fft_c",
    "fk_corrector",
    "fk_steering",
    "gaussian_kernel",
    "grad_dc",
    "hard_dc",
    "ifft_c",
    "inner",
    "ir_sde_euler_maruyama",
    "ir_sde_loss",
    "ir_sde_posterior",
    "line_actions",
    "mr_grid",
    "mr_sampler",
    "pigdm",
    "pixel_actions",
    "product_target",
    "prox_dc",
    "red_diff",
    "register_operator",
    "resample",
    "resshift_loss",
    "resshift_posterior",
    "resshift_sample",
    "systematic_resample",
    "twisted_smc",
    "with_condition",
]
