"""DDRM: denoising diffusion restoration models (Kawar et al. 2022), for operators with an SVD.

DDRM is a sampler, not a denoiser transform: its noise is injected per singular component with
component-dependent variances, which no single ``x0`` estimate can express. It runs on any
mean-free Gaussian process through the VE frame ``x~ = x / alpha``, ``sigma~ = sigma / alpha``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..solvers._common import noise_like, prepare, report, steps
from .dc import check_problem
from .operators import LinearOperator

__all__ = ["ddrm"]


def ddrm(
    denoiser,
    op: LinearOperator,
    y: Tensor,
    grid: Tensor,
    *,
    sigma_y: float,
    eta: float = 0.85,
    eta_b: float = 1.0,
    x: Tensor | None = None,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> Tensor:
    """DDRM, Kawar et al. (2022) Eq. (7)-(8), in the spectral coordinates ``xb = V^H x~``.

    With ``yb = U^H y / s`` (noise std ``sigma_y / s_i``) and the denoiser's ``xb0 = V^H x0_hat``,
    a step ``sigma~ -> sigma~'`` sets, per component::

        s_i = 0:                    xb' = xb0 + sqrt(1 - eta^2) sigma~' (xb - xb0) / sigma~
                                          + eta sigma~' z
        sigma~' < sigma_y / s_i:    xb' = xb0 + sqrt(1 - eta^2) sigma~' (yb - xb0) / (sigma_y/s_i)
                                          + eta sigma~' z
        sigma~' >= sigma_y / s_i:   xb' = (1 - eta_b) xb0 + eta_b yb
                                          + sqrt(sigma~'^2 - eta_b^2 sigma_y^2 / s_i^2) z

    and starts from ``xb_T = yb + sqrt(sigma~_T^2 - sigma_y^2/s_i^2) z`` on observed components
    (``sigma~_T z`` elsewhere) unless ``x`` is given. Defaults ``eta = 0.85, eta_b = 1`` (the
    paper's). Real input spaces only (the denoiser sees real samples).

    Parameters
    ----------
    y
        Measurements ``(B, *op.out_shape)``; one reconstruction per measurement.
    grid
        Descending times (``solvers.make_grid``); a grid ending at 0 returns clean samples.
    """
    if not isinstance(op, LinearOperator) or not op.has_svd:
        raise TypeError(
            f"ddrm needs a linear operator with an SVD (has_svd=True: Mask, FFTMask, Matrix,"
            f" Downsample, Identity); got {type(op).__name__}"
        )
    if op.in_complex:
        raise TypeError("ddrm works on real input spaces; the denoiser sees real samples")
    if not 0 <= eta <= 1 or not 0 <= eta_b <= 1:
        raise ValueError(f"need 0 <= eta, eta_b <= 1; got eta={eta}, eta_b={eta_b}")
    sy = float(sigma_y)
    if not sy >= 0:
        raise ValueError(f"sigma_y must be >= 0; got {sigma_y}")
    y = check_problem(op, y, name="ddrm")
    process = denoiser.process
    if getattr(process, "has_mean", False):
        raise ValueError(f"ddrm supports mean-free processes; {process.name!r} drifts to a mean")
    B = y.shape[0]
    dtype = y.dtype
    s = op.singular_values().to(device=y.device, dtype=dtype)
    s = s.expand(B, s.shape[-1]) if s.ndim == 1 else s
    obs = s > 1e-12 * s.max()
    s_safe = torch.where(obs, s, torch.ones_like(s))
    yb = torch.where(obs, op.U_adjoint(y) / s_safe, torch.zeros_like(s))
    ny = torch.where(obs, sy / s_safe, torch.full_like(s, float("inf")))  # noise std of yb

    start = op.zeros_in(B, dtype=dtype, device=y.device) if x is None else x
    _, model, sched = prepare(denoiser, start, grid, cond, name="ddrm")
    ve = (sched.sigma / sched.alpha).tolist()
    if x is None:
        z = torch.randn(s.shape, generator=generator, dtype=dtype, device=y.device)
        s0 = ve[0]
        spread = torch.sqrt((s0**2 - ny**2).clamp(min=0))
        xb = torch.where(obs & (ny < s0), yb + spread * z, s0 * z)
    else:
        op.check_input(x)
        xb = op.V_adjoint(x / float(sched.alpha[0]))
    n = len(sched) - 1
    for i in steps(n, progress, "ddrm"):
        a = float(sched.alpha[i])
        x0 = model(op.V(xb) * a, i)
        xb0 = op.V_adjoint(x0)
        sg, sn = ve[i], ve[i + 1]
        z = noise_like(xb, generator)
        keep = (1 - eta**2) ** 0.5 * sn
        unobs = xb0 + keep * (xb - xb0) / sg + eta * sn * z
        ny_safe = torch.where(obs, ny, torch.ones_like(ny))
        below = xb0 + keep * (yb - xb0) / ny_safe.clamp(min=1e-300) + eta * sn * z
        above = (
            (1 - eta_b) * xb0
            + eta_b * yb
            + torch.sqrt((sn**2 - (eta_b * ny_safe) ** 2).clamp(min=0)) * z
        )
        xb = torch.where(~obs, unobs, torch.where(sn < ny, below, above))
        a_n = float(sched.alpha[i + 1])
        report(
            callback,
            i=i,
            t=float(sched.t[i]),
            t_next=float(sched.t[i + 1]),
            x=op.V(xb) * a_n,
            x0=x0,
        )
    return op.V(xb) * float(sched.alpha[-1])
