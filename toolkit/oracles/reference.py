"""Reference probability-flow ODE solutions: adaptive high-order integration in float64.

In the VE frame ``x~ = (x - mu) / alpha`` with half log-SNR ``lam = log(alpha / sigma)`` the
PF-ODE of every Gaussian process is the non-stiff ``d x~ / d lam = D~(x~) - x~``
(``D~ = D - mu``), which DOP853 (scipy) integrates to ``rtol = atol = 1e-10`` in a few hundred
evaluations. This is the ground truth of the solver order tests and benchmarks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._tensor import get_mu
from ..processes import GaussianProcess

__all__ = ["reference_ode"]


def reference_ode(
    denoiser,
    x: Tensor,
    t_start: float,
    t_end: float,
    *,
    cond: Any = None,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    return_nfe: bool = False,
):
    """Integrate the PF-ODE of ``denoiser.process`` from ``t_start`` to ``t_end`` (both in (0, 1]).

    The whole batch is one ODE system (one step-size sequence), in float64. Returns ``x_{t_end}``
    (and the number of denoiser calls when ``return_nfe``).
    """
    from scipy.integrate import solve_ivp

    process = denoiser.process
    if not isinstance(process, GaussianProcess):
        raise TypeError("reference_ode needs a Gaussian process")
    ls, le = (float(process.log_snr(float(v))) / 2 for v in (t_start, t_end))
    if not (np.isfinite(ls) and np.isfinite(le)):
        raise ValueError(
            f"log-SNR is infinite at t_start={t_start} or t_end={t_end}; the PF-ODE reference"
            " needs both ends strictly inside (0, 1) for this process (e.g. t_end = process.t_min)"
        )
    mu = process.check_mu(get_mu(cond), x)
    x64 = x.detach().to(torch.float64)
    mu64 = None if mu is None else mu.to(torch.float64)
    shape = x64.shape
    a0 = float(process.alpha(t_start))
    y0 = (x64 if mu64 is None else x64 - mu64) / a0
    nfe = 0

    def rhs(lam: float, z: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        t = process.t_of_log_snr(torch.tensor(2 * lam, dtype=torch.float64))
        a = float(process.alpha(t))
        xt = torch.from_numpy(z).reshape(shape) * a
        if mu64 is not None:
            xt = xt + mu64
        tt = torch.full((shape[0],), float(t), dtype=torch.float64)
        with torch.no_grad():
            d = denoiser(xt, tt, cond).to(torch.float64)
        if mu64 is not None:
            d = d - mu64
        return d.reshape(-1).numpy() - z

    sol = solve_ivp(rhs, (ls, le), y0.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference ODE integration failed: {sol.message}")
    a1 = float(process.alpha(t_end))
    out = torch.from_numpy(sol.y[:, -1].copy()).reshape(shape) * a1
    if mu64 is not None:
        out = out + mu64
    return (out, nfe) if return_nfe else out
