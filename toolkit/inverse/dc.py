"""Data consistency as denoiser transforms (contract 4): each takes a denoiser and returns one.

Every transform returns ``D'(x, t, cond) -> x0`` with the same ``.process``, so it runs inside every
data-prediction solver (DDIM, DDPM, DPM-Solver++, ...). Two kinds:

*Projections of the clean estimate* (``hard_dc``, ``prox_dc``, ``grad_dc``) replace ``x0_hat`` by a
data-consistent ``x0``; the solver then steps from it (DDNM / DiffPIR / k-space replacement). They
need no gradient through the denoiser and are exact for nothing in particular: with an exact prior
they are still biased (hard DC on a Gaussian toy: ~20 % mean error, notes/01 B1).

*Guidance* (``dps``, ``pigdm``) adds a likelihood score ``g = grad_{x_t} log p~(y | x_t)`` in the
one form every solver understands, the guided clean estimate (the score is
``(alpha x0 - x) / sigma^2``)::

    x0_guided = x0_hat + (sigma^2 / alpha) g                                            (1)

In a DDPM/DDIM step ``x' = c_x0 x0 + c_x x + noise``, (1) shifts the mean by
``c_x0 (sigma^2/alpha) g`` (``= beta_t / sqrt(alpha_t) g`` for a DDPM chain, the conditional-score
step of Chung et al. 2023 and Song et al. 2023). PiGDM with the exact ``Cov[x0 | x_t]`` makes
``g`` the exact likelihood score of a Gaussian prior, so any consistent solver samples the exact
posterior; DPS and PiGDM with ``r_t^2`` are approximations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time, bcast
from .operators import LinearOperator, Operator, cg, inner

__all__ = [
    "conditional_dc",
    "dps",
    "grad_dc",
    "hard_dc",
    "pigdm",
    "prox_dc",
    "ref_step_coefficient",
    "with_condition",
]


# -- shared checks ---------------------------------------------------------------------------------
def check_problem(op: Operator, y: Tensor, *, name: str) -> Tensor:
    """Validate ``op`` and the measurement ``y (B or 1, *op.out_shape)``; return ``y``."""
    if not isinstance(op, Operator):
        raise TypeError(
            f"{name} needs a sciffusion.inverse Operator; got {type(op).__name__}. Wrap a plain"
            " callable with sciffusion.inverse.Nonlinear(fn, in_shape, out_shape)."
        )
    if not isinstance(y, Tensor):
        raise TypeError(f"{name}: the measurement y must be a tensor; got {type(y).__name__}")
    return op.check_measurement(y)


def match_batch(y: Tensor, batch: int, *, name: str = "y") -> Tensor:
    """``y`` with batch ``batch`` (a single measurement is shared by all samples)."""
    if y.shape[0] == batch:
        return y
    if y.shape[0] == 1:
        return y.expand(batch, *y.shape[1:])
    raise ValueError(
        f"{name} has batch {y.shape[0]} but the samples have batch {batch}; pass one measurement"
        " per sample or a single one (batch 1) shared by all"
    )


def _check_sigma_y(sigma_y: float, name: str) -> float:
    s = float(sigma_y)
    if not s >= 0 or s == float("inf"):
        raise ValueError(f"{name}: sigma_y must be finite and >= 0; got {sigma_y}")
    return s


class _Transform:
    """Base of the transforms: carries the inner denoiser, the problem and ``.process``."""

    def __init__(self, denoiser, op: Operator, y: Tensor, name: str) -> None:
        if not hasattr(denoiser, "process"):
            raise TypeError(
                f"{name} transforms a denoiser D(x, t, cond) with a .process attribute; got"
                f" {type(denoiser).__name__}"
            )
        self.denoiser = denoiser
        self.process = denoiser.process
        self.op = op
        self.y = check_problem(op, y, name=name)
        self.name = name

    def _y(self, x0: Tensor) -> Tensor:
        self.op.check_input(x0)
        y = match_batch(self.y, x0.shape[0])
        return y.to(device=x0.device, dtype=_like_dtype(y, x0))


def _like_dtype(y: Tensor, x: Tensor) -> torch.dtype:
    real = x.real.dtype if x.is_complex() else x.dtype
    if y.is_complex():
        return torch.complex128 if real == torch.float64 else torch.complex64
    return real


# -- projections of the clean estimate ------------------------------------------------------------
class _Hard(_Transform):
    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        x0 = self.denoiser(x, t, cond)
        y = self._y(x0)
        return x0 + self.op.pinv(y - self.op.A(x0))


def hard_dc(denoiser, op: LinearOperator, y: Tensor):
    """Hard projection, DDNM (Wang et al. 2023, Eq. 13): ``x0 <- A^+ y + (I - A^+ A) x0_hat``.

    For a mask or a Cartesian Fourier mask ``A^+ = A^H`` and this *is* k-space replacement
    ``F^-1[(1 - M) F x0 + M y]``. Noiseless data only (it fits the noise otherwise: use
    :func:`prox_dc`). Biased even with an exact prior (notes/01 B1: ~0.22 mean error).
    """
    _require_linear(op, "hard_dc")
    return _Hard(denoiser, op, y, "hard_dc")


class _Prox(_Transform):
    def __init__(self, denoiser, op, y, sigma_y: float, lam: float, **cg_kw) -> None:
        super().__init__(denoiser, op, y, "prox_dc")
        self.sigma_y = _check_sigma_y(sigma_y, "prox_dc")
        if not lam > 0:
            raise ValueError(f"prox_dc: lam must be > 0; got {lam}")
        self.lam = float(lam)
        self.cg_kw = cg_kw

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        x0 = self.denoiser(x, t, cond)
        y = self._y(x0)
        if self.sigma_y == 0:
            return x0 + self.op.pinv(y - self.op.A(x0))
        tt = as_time(t, x, dtype=torch.float64)
        ve = _at_times(lambda u: self.process.sigma(u) / self.process.alpha(u), tt)  # sigma~_t
        rho = (self.lam * self.sigma_y**2 / ve**2).to(_real(x0))
        return self.op.prox_l2(x0, rho, y, **self.cg_kw)


def prox_dc(denoiser, op: LinearOperator, y: Tensor, *, sigma_y: float, lam: float = 7.0, **cg_kw):
    """Proximal data consistency, DiffPIR (Zhu et al. 2023, Eq. 13 / Alg. 1)::

        x0 = argmin_x ||y - A x||^2 + rho_t ||x - x0_hat||^2,   rho_t = lam sigma_y^2 / sigma~_t^2

    with ``sigma~_t = sigma_t / alpha_t``. Closed form for masks, Fourier masks, blur and
    downsampling; CG otherwise (``cg_kw``: ``max_iter``, ``tol``). ``sigma_y = 0`` is the hard
    projection. DiffPIR's stochasticity ``zeta`` is the solver's DDIM ``eta``.
    """
    _require_linear(op, "prox_dc")
    return _Prox(denoiser, op, y, sigma_y, lam, **cg_kw)


class _Grad(_Transform):
    def __init__(self, denoiser, op, y, step: float, n_iter: int) -> None:
        super().__init__(denoiser, op, y, "grad_dc")
        if not step > 0 or int(n_iter) < 1:
            raise ValueError(f"grad_dc: need step > 0 and n_iter >= 1; got {step}, {n_iter}")
        self.step, self.n_iter = float(step), int(n_iter)

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        x0 = self.denoiser(x, t, cond)
        y = self._y(x0)
        for _ in range(self.n_iter):
            x0 = x0 - self.step * self.op.grad(x0, y)
        return x0


def grad_dc(denoiser, op: Operator, y: Tensor, *, step: float = 1.0, n_iter: int = 1):
    """Gradient data consistency ``x0 <- x0_hat - step * J^H (A(x0_hat) - y)`` (``n_iter`` times).

    Works for non-linear operators (the gradient is a VJP). For a binary mask, ``step = 1`` is
    the hard projection.
    """
    return _Grad(denoiser, op, y, step, n_iter)


# -- guidance: DPS and PiGDM ----------------------------------------------------------------------
def ref_step_coefficient(process, t: Tensor, *, ref_steps: int, ref_eta: float = 1.0) -> Tensor:
    """``c_x0`` of the DDIM(``ref_eta``) step ``t -> t - 1/ref_steps``: the mean's ``x0`` factor.

    With ``k = sqrt(sigma'^2 - c^2)``, ``c = eta sigma' sqrt(1 - e^{-2h})`` (the ``ddim`` solver),
    ``c_x0 = alpha' - k alpha / sigma``; for a DDPM chain (``eta = 1``) this is
    ``sqrt(abar') beta_t / (1 - abar_t)`` (Ho et al. 2020, Eq. 7). float64, shape of ``t``.
    """
    t = t.to(torch.float64)
    tp = (t - 1.0 / ref_steps).clamp(min=0.0)
    a, s = process.alpha(t), process.sigma(t)
    ap, sp = process.alpha(tp), process.sigma(tp)
    e_mh = torch.where(sp > 0, (a * sp) / (s * ap), torch.zeros_like(sp))  # e^{-h}
    c2 = (ref_eta * sp) ** 2 * (1 - e_mh**2)
    k = torch.sqrt((sp**2 - c2).clamp(min=0))
    return ap - torch.where(s > 0, k * a / torch.where(s > 0, s, torch.ones_like(s)), 0.0)


def _at_times(fn, t: Tensor) -> Tensor:
    """``fn(t)`` for a batch of times, evaluated once when they are all equal (the usual case)."""
    if t.numel() > 1 and bool((t == t[0]).all()):
        return fn(t[:1]).expand(t.shape)
    return fn(t)


def _real(x: Tensor) -> torch.dtype:
    return x.real.dtype if x.is_complex() else x.dtype


def _per_sample_norm(v: Tensor) -> Tensor:
    return inner(v, v).clamp(min=0).sqrt()


class _DPS(_Transform):
    def __init__(self, denoiser, op, y, zeta, squared, ref_steps, ref_eta) -> None:
        super().__init__(denoiser, op, y, "dps")
        if not zeta >= 0:
            raise ValueError(f"dps: zeta must be >= 0; got {zeta}")
        self.zeta, self.squared = float(zeta), bool(squared)
        self.ref_steps, self.ref_eta = int(ref_steps), float(ref_eta)

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        tt = as_time(t, x)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            x0 = self.denoiser(xx, tt, cond)
            y = self._y(x0)
            r = y - self.op.A(x0)
            norm2 = inner(r, r)
            loss = norm2 if self.squared else norm2.clamp(min=1e-30).sqrt()
            (g,) = torch.autograd.grad(loss.sum(), xx)
        g = torch.nan_to_num(g)
        t64 = tt.to(torch.float64)
        c_x0 = _at_times(
            lambda u: ref_step_coefficient(
                self.process, u, ref_steps=self.ref_steps, ref_eta=self.ref_eta
            ),
            t64,
        )
        shift = (-self.zeta / c_x0).to(_real(x))  # x0 shift whose mean effect is -zeta * g
        return x0.detach() + bcast(shift, x) * g


def dps(
    denoiser,
    op: Operator,
    y: Tensor,
    *,
    zeta: float = 1.0,
    squared: bool = False,
    ref_steps: int | None = None,
    ref_eta: float = 1.0,
):
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1) as a guided denoiser.

    DPS takes the DDPM step ``x' = x'_uncond - zeta grad_{x_t} ||y - A(x0_hat(x_t))||`` (unsquared
    norm, as the authors' code; ``squared=True`` uses ``||.||^2``), back-propagating through the
    denoiser. Here the step is returned as ``x0_guided = x0_hat - (zeta / c_x0) grad`` with ``c_x0``
    the ``x0`` coefficient of the reference DDIM(``ref_eta``) step ``t -> t - 1/ref_steps``
    (:func:`ref_step_coefficient`): on that chain (``ddpm`` on a uniform ``ref_steps`` grid for
    ``ref_eta = 1``; ``ddim`` for ``0``, the ADS form) the result is *exactly* Chung et al.'s
    update; on other grids and solvers it is the same guidance strength per unit time.
    ``ref_steps`` defaults to ``process.num_steps`` (discrete DDPMs) or 1000.

    DPS is not a posterior sampler: with an exact Gaussian prior its mean error is ~0.2-0.3
    (notes/01 B1). Works with non-linear operators.
    """
    if ref_steps is None:
        ref_steps = int(getattr(denoiser.process, "num_steps", 1000))
    if ref_steps < 1:
        raise ValueError(f"dps: ref_steps must be >= 1; got {ref_steps}")
    return _DPS(denoiser, op, y, zeta, squared, ref_steps, ref_eta)


class _PiGDM(_Transform):
    def __init__(self, denoiser, op, y, sigma_y, posterior_cov, weight, cg_kw) -> None:
        super().__init__(denoiser, op, y, "pigdm")
        self.sigma_y = _check_sigma_y(sigma_y, "pigdm")
        self.posterior_cov = posterior_cov
        self.weight = float(weight)
        self.cg_kw = {"max_iter": 200, "tol": 1e-10, **cg_kw}
        self._dense = None
        if posterior_cov is not None:
            if op.in_complex or op.out_complex:
                raise TypeError(
                    "pigdm with an exact posterior_cov supports real operators only; use the"
                    " r_t^2 form (posterior_cov=None) for complex ones"
                )
            self._dense = op.dense()

    def _solve_r2(self, res: Tensor, r2: Tensor) -> Tensor:
        s2 = self.sigma_y**2
        rr = bcast(r2.to(_real(res)), res)
        return cg(lambda u: rr * self.op.A(self.op.A_adjoint(u)) + s2 * u, res, **self.cg_kw)

    def _solve_exact(self, res: Tensor, t: Tensor) -> Tensor:
        shared = bool((t == t[0]).all())  # one time for the whole batch: one covariance, one solve
        C = torch.as_tensor(self.posterior_cov(t[:1] if shared else t)).to(res.dtype)
        C = C[None] if C.ndim == 2 else C  # (1 or B, d, d)
        M = self._dense.to(res.dtype)
        S = M @ C @ M.mT + self.sigma_y**2 * torch.eye(M.shape[0], dtype=res.dtype)
        rhs = res.reshape(res.shape[0], -1)
        # sigma_y = 0 with zero-filled outputs leaves S singular off the range: least norm there
        if S.shape[0] == 1:
            S0 = S[0]
            u = (
                torch.linalg.solve(S0, rhs.mT)
                if self.sigma_y > 0
                else torch.linalg.pinv(S0) @ rhs.mT
            ).mT
        else:
            S = S.expand(rhs.shape[0], *S.shape[1:])
            u = (
                torch.linalg.solve(S, rhs[..., None])
                if self.sigma_y > 0
                else torch.linalg.pinv(S) @ rhs[..., None]
            )[..., 0]
        return u.reshape(res.shape)

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        tt = as_time(t, x)
        t64 = tt.to(torch.float64)
        a = _at_times(self.process.alpha, t64)
        s = _at_times(self.process.sigma, t64)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            x0 = self.denoiser(xx, tt, cond)
            y = self._y(x0)
            with torch.no_grad():
                res = y - self.op.A(x0)
                if self._dense is None:
                    u = self._solve_r2(res, s**2 / (a**2 + s**2))
                else:
                    u = self._solve_exact(res, t64)
                v = self.op.A_adjoint(u)
            (g,) = torch.autograd.grad(x0, xx, grad_outputs=v)
        scale = (self.weight * s**2 / a).to(_real(x))
        return x0.detach() + bcast(scale, x) * torch.nan_to_num(g)


def pigdm(
    denoiser,
    op: LinearOperator,
    y: Tensor,
    *,
    sigma_y: float,
    posterior_cov: Callable[[Tensor], Tensor] | None = None,
    weight: float = 1.0,
    **cg_kw,
):
    """Pseudo-inverse guided diffusion (PiGDM, Song et al. 2023, Eq. 7-8) as a guided denoiser::

        g = J^T A^H (A C_t A^H + sigma_y^2 I)^-1 (y - A x0_hat),   J = d x0_hat / d x_t

    inserted through Eq. (1) of this module (``weight`` scales ``g``). ``C_t = r_t^2 I`` with
    ``r_t^2 = sigma^2 / (alpha^2 + sigma^2)`` (the paper's ``1 - abar_t`` for VP; exact for
    unit-variance white data), the solve by CG in measurement space; or, with
    ``posterior_cov(t) -> (B, d, d)`` (e.g. ``lambda t: oracle.posterior_cov(t, process)``), the
    exact ``Cov[x0 | x_t]``: then ``g`` is the exact likelihood score of a Gaussian prior and any
    consistent solver (``ddpm`` on a fine grid) samples the exact posterior (B1: ~1 % mean error).
    """
    _require_linear(op, "pigdm")
    return _PiGDM(denoiser, op, y, sigma_y, posterior_cov, weight, cg_kw)


# -- conditional models ----------------------------------------------------------------------------
class _WithCondition:
    def __init__(self, denoiser, cond) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self.cond = cond

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        c = self.cond
        if isinstance(c, Tensor):
            c = match_batch(c, x.shape[0], name="the condition")
        return self.denoiser(x, t, c)


def with_condition(denoiser, cond):
    """A denoiser with its condition fixed (e.g. ``A^+ y`` for a conditional reconstruction net).

    A tensor condition of batch 1 is shared by all samples. The solver's own ``cond`` is ignored.
    """
    return _WithCondition(denoiser, cond)


_DC = {"hard": hard_dc, "prox": prox_dc, "grad": grad_dc, "dps": dps, "pigdm": pigdm}


def conditional_dc(
    denoiser,
    op: Operator,
    y: Tensor,
    *,
    dc: str = "hard",
    condition: Tensor | str | None = "pinv",
    **dc_kwargs,
):
    """Conditional diffusion plus data consistency in every reverse step (Alsubaie et al. 2025).

    The conditional denoiser sees ``condition`` (``"pinv"``: ``A^+ y``, the zero-filled image for
    masks; a tensor; or ``None`` to keep the solver's ``cond``), and its estimate goes through the
    ``dc`` transform (``hard``, ``prox``, ``grad``, ``dps`` or ``pigdm``; ``dc_kwargs`` go to it).
    """
    if dc not in _DC:
        raise ValueError(f"unknown dc {dc!r}; choose one of {sorted(_DC)}")
    y = check_problem(op, y, name="conditional_dc")
    if isinstance(condition, str):
        if condition != "pinv":
            raise ValueError(f"condition must be 'pinv', a tensor or None; got {condition!r}")
        _require_linear(op, "conditional_dc(condition='pinv')")
        condition = op.pinv(y)
    inner_d = denoiser if condition is None else with_condition(denoiser, condition)
    return _DC[dc](inner_d, op, y, **dc_kwargs)


def _require_linear(op: Operator, name: str) -> None:
    if not isinstance(op, LinearOperator):
        raise TypeError(
            f"{name} needs a linear operator (pinv / prox / adjoint); got the non-linear"
            f" {type(op).__name__}. Use grad_dc or dps for non-linear forward models."
        )
