"""Pseudo numerical methods (Liu et al. 2022): F-PNDM, S-PNDM and PLMS.

The transfer ``phi(y, eps, s -> t) = alpha_t (y - sigma_s eps) / alpha_s + sigma_t eps`` is a DDIM
step with a given noise estimate (Eq. 11 of the paper); the methods differ in the ``eps'`` they
feed it. Linear multistep (Adams-Bashforth with constant-step coefficients, Eq. 12)::

    eps' = (3 e_0 - e_1) / 2                                   (2 steps)
    eps' = (23 e_0 - 16 e_1 + 5 e_2) / 12                      (3 steps)
    eps' = (55 e_0 - 59 e_1 + 37 e_2 - 9 e_3) / 24             (4 steps)

F-PNDM warms up with three pseudo Runge-Kutta steps (4 calls each, midpoint in ``t``, Eq. 13);
S-PNDM with one pseudo improved-Euler step (2 calls), then the 2-step formula. PLMS is diffusers'
``PNDMScheduler(skip_prk_steps=True)``: the pseudo improved-Euler start, then 2-, 3-, 4-step
formulas. The constant-step coefficients are only second order on non-uniform grids.
"""

from __future__ import annotations

from torch import Tensor

from ._common import Point, ddim_step, eps_of, prepare, report, steps

__all__ = ["plms", "pndm", "spndm"]

_AB = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def _transfer(y: Tensor, eps: Tensor, ps: Point, pt: Point) -> Tensor:
    """``phi``: DDIM step with a given noise estimate (needs ``alpha_s > 0``)."""
    x0 = (y - eps * ps.sigma) / ps.alpha
    return x0 * pt.alpha + eps * pt.sigma


def pndm(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """F-PNDM: 3 pseudo-RK4 warm-up steps (12 calls), then 4-step pseudo linear multistep."""
    return _run(denoiser, x, grid, cond, callback, progress, name="pndm", warmup="rk4", ab=4)


def spndm(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """S-PNDM: 1 pseudo improved-Euler step (2 calls), then 2-step pseudo linear multistep."""
    return _run(denoiser, x, grid, cond, callback, progress, name="spndm", warmup="heun", ab=2)


def plms(
    denoiser, x: Tensor, grid: Tensor, *, cond=None, generator=None, callback=None, progress=False
) -> Tensor:
    """PLMS as diffusers' ``skip_prk_steps``: pseudo improved-Euler start, then 2/3/4-step
    pseudo linear multistep (NFE = steps + 1)."""
    return _run(denoiser, x, grid, cond, callback, progress, name="plms", warmup="heun", ab=4)


def _run(denoiser, x, grid, cond, callback, progress, *, name: str, warmup: str, ab: int):
    y, model, s = prepare(denoiser, x, grid, cond, name=name)
    n = len(s) - 1
    n_warm = 3 if warmup == "rk4" else 1
    ets: list[Tensor] = []  # noise estimates at the grid points, most recent last
    for i in steps(n, progress, name):
        ps, pt = s[i], s[i + 1]
        d = model(y, i)
        if pt.sigma == 0 or ps.alpha == 0:
            y = ddim_step(y, d, ps, pt)
        else:
            e0 = eps_of(y, d, ps)
            ets = [*ets, e0][-ab:]
            if i < n_warm:
                e_eff = (
                    _rk4(model, y, e0, s, ps, pt)
                    if warmup == "rk4"
                    else _heun(model, y, e0, ps, pt)
                )
            else:
                coef = _AB[len(ets)]
                e_eff = ets[-1] * coef[0]
                for cf, e in zip(coef[1:], ets[-2::-1], strict=True):
                    e_eff = e_eff + e * cf
            y = _transfer(y, e_eff, ps, pt)
        report(callback, i=i, t=ps.t, t_next=pt.t, x=model.output(y), x0=model.output(d))
    return model.output(y)


def _eps_at(model, u: Tensor, p: Point) -> Tensor:
    return eps_of(u, model.at_time(u, p.t), p)


def _heun(model, y: Tensor, e1: Tensor, ps: Point, pt: Point) -> Tensor:
    e2 = _eps_at(model, _transfer(y, e1, ps, pt), pt)
    return (e1 + e2) * 0.5


def _rk4(model, y: Tensor, e1: Tensor, s, ps: Point, pt: Point) -> Tensor:
    pm = s.at(0.5 * (ps.t + pt.t))
    e2 = _eps_at(model, _transfer(y, e1, ps, pm), pm)
    e3 = _eps_at(model, _transfer(y, e2, ps, pm), pm)
    e4 = _eps_at(model, _transfer(y, e3, ps, pt), pt)
    return (e1 + (e2 + e3) * 2 + e4) / 6
