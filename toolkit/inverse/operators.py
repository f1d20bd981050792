"""Forward operators (contract 5): ``y = A(x)`` on batches ``x (B, *in_shape)``.

Linear operators carry ``A``, ``A_adjoint``, ``pinv``, ``prox_l2`` and, when decomposable, an SVD
``A = U diag(s) V^H`` (for DDRM); every one inherits :meth:`LinearOperator.adjointness_test` and
:meth:`LinearOperator.norm`. Defaults (``pinv``, ``prox_l2``) use conjugate gradients on the normal
equations; subclasses override them with closed forms where one exists. Inner products are
``<a, b> = Re sum(conj(a) b)``, so complex operators (``complex64`` k-space) are adjoint in the real
sense networks need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "OPERATORS",
    "LinearOperator",
    "Operator",
    "cg",
    "inner",
    "register_operator",
]


def inner(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample real inner product ``Re sum(conj(a) * b)``, shape ``(B,)``."""
    prod = torch.conj(a) * b if a.is_complex() else a * b
    total = prod.reshape(a.shape[0], -1).sum(-1)
    return total.real if total.is_complex() else total


def cg(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> Tensor:
    """Batched conjugate gradients for a Hermitian positive (semi-)definite ``apply``.

    Each batch entry stops (its iterate frozen) once ``||r|| <= tol ||b||``; ``tol`` is floored at
    ten machine epsilons of the data's precision, because iterating past round-off on a singular
    system (e.g. a masked normal operator in float32) loses conjugacy and diverges. Works on real
    and complex tensors of any rank.
    """
    real = b.real.dtype if b.is_complex() else b.dtype
    tol = max(tol, 10 * torch.finfo(real).eps)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = inner(r, r)
    bnorm = inner(b, b).sqrt().clamp(min=torch.finfo(real).tiny)
    tiny = torch.finfo(rs.dtype).tiny
    shape = (-1,) + (1,) * (b.ndim - 1)
    for _ in range(max_iter):
        active = rs.sqrt() > tol * bnorm
        if not bool(active.any()):
            break
        Ap = apply(p)
        pAp = inner(p, Ap)
        ok = active & (pAp > 0)
        alpha = torch.where(ok, rs / pAp.clamp(min=tiny), torch.zeros_like(rs))
        x = x + alpha.reshape(shape).to(x.dtype) * p
        r = r - alpha.reshape(shape).to(r.dtype) * Ap
        rs_new = inner(r, r)
        beta = torch.where(ok & (rs > 0), rs_new / rs.clamp(min=tiny), torch.zeros_like(rs))
        p = torch.where(ok.reshape(shape), r + beta.reshape(shape).to(r.dtype) * p, p)
        rs = torch.where(ok, rs_new, rs)
    return x


class Operator:
    """A differentiable, possibly non-linear forward model ``y = A(x)`` (subclass and define ``A``).

    ``in_shape`` / ``out_shape`` are event shapes (without the batch); ``in_complex`` /
    ``out_complex`` say whether each side is complex. :meth:`check_input` and
    :meth:`check_measurement` give the errors users see for mismatched data.
    """

    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    in_complex: bool = False
    out_complex: bool = False
    linear: bool = False

    def A(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define A(x)")

    def __call__(self, x: Tensor) -> Tensor:
        return self.A(x)

    def _check(self, v: Tensor, shape: tuple[int, ...], is_complex: bool, what: str) -> Tensor:
        if tuple(v.shape[1:]) != tuple(shape):
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {tuple(v.shape)} but the operator"
                f" expects (B, {', '.join(map(str, shape))}). Check the image size / mask width /"
                " coil count."
            )
        if v.is_complex() != is_complex:
            kind = "complex" if is_complex else "real"
            raise TypeError(
                f"{type(self).__name__}: {what} is {'complex' if v.is_complex() else 'real'} but"
                f" the operator expects {kind} data. Convert with torch.view_as_complex / .real, or"
                " sciffusion.complex.from_channels for (real, imag) channel pairs."
            )
        return v

    def check_input(self, x: Tensor) -> Tensor:
        return self._check(x, self.in_shape, self.in_complex, "the input x")

    def check_measurement(self, y: Tensor) -> Tensor:
        self._check(y, self.out_shape, self.out_complex, "the measurement y")
        if not bool(torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()):
            raise ValueError(
                f"{type(self).__name__}: the measurement y contains NaN or inf; clean the data"
                " (e.g. zero unsampled entries) before reconstruction"
            )
        return y

    def zeros_in(self, batch: int, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
        dt = dtype or (torch.complex64 if self.in_complex else torch.float32)
        return torch.zeros((batch, *self.in_shape), dtype=dt, device=device)

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """Vector-Jacobian product ``J(x)^H v`` (real inner product), by autograd."""
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            out = self.A(xx)
            (g,) = torch.autograd.grad(out, xx, grad_outputs=v.to(out.dtype))
        return g

    def grad(self, x: Tensor, y: Tensor) -> Tensor:
        """Gradient of the data fit ``1/2 ||A(x) - y||^2`` w.r.t. ``x``: ``J(x)^H (A(x) - y)``."""
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            r = self.A(xx) - y
            loss = 0.5 * inner(r, r).sum()
            (g,) = torch.autograd.grad(loss, xx)
        return g

    def __matmul__(self, other: Operator) -> Operator:
        """``outer @ inner`` is the composition ``x -> outer(inner(x))``."""
        from .combine import compose

        return compose(self, other)


class LinearOperator(Operator):
    """A linear operator. Subclasses define ``A`` and ``A_adjoint``; they may override ``pinv``,
    ``prox_l2`` and the SVD methods (``has_svd = True``)."""

    linear = True
    has_svd: bool = False
    # a fixed batch size for operators with per-sample parameters (per-sample masks); None if any
    batch_size: int | None = None

    def A_adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define A_adjoint(y)")

    def normal(self, x: Tensor) -> Tensor:
        """``A^H A x``."""
        return self.A_adjoint(self.A(x))

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """``A^H v`` (the Jacobian of a linear map is the map itself)."""
        return self.A_adjoint(v)

    def grad(self, x: Tensor, y: Tensor) -> Tensor:
        """Gradient of ``1/2 ||A x - y||^2``: ``A^H (A x - y)``."""
        return self.A_adjoint(self.A(x) - y)

    def dense(self, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """The real matrix of ``A`` on real coordinates, shape ``(m_real, n_real)``.

        Complex entries count as two real coordinates (``view_as_real`` order: real, imaginary),
        so ``dense()`` represents ``A`` in the real inner product of :func:`inner`. Small operators
        only (``n_real`` applications of ``A``): tests, oracles and exact-covariance guidance.
        """
        n = int(torch.tensor(self.in_shape).prod()) * (2 if self.in_complex else 1)
        eye = torch.eye(n, dtype=dtype, device=device)
        if self.in_complex:
            basis = torch.view_as_complex(eye.reshape(n, *self.in_shape, 2))
        else:
            basis = eye.reshape(n, *self.in_shape)
        cols = self.A(basis)
        cols = torch.view_as_real(cols) if cols.is_complex() else cols
        return cols.reshape(n, -1).mT.contiguous()

    def pinv(self, y: Tensor, *, max_iter: int = 100, tol: float = 1e-6) -> Tensor:
        """Minimum-norm least squares ``A^+ y`` (CG on ``A^H A x = A^H y`` from zero)."""
        return cg(self.normal, self.A_adjoint(y), max_iter=max_iter, tol=tol)

    def prox_l2(
        self, z: Tensor, rho: float | Tensor, y: Tensor, *, max_iter: int = 100, tol: float = 1e-6
    ):
        """``argmin_x 1/2 ||A x - y||^2 + rho/2 ||x - z||^2 = (A^H A + rho I)^-1 (A^H y + rho z)``.

        ``rho`` is a float or a per-sample ``(B,)`` tensor.
        """
        r = _per_sample(rho, z)
        return cg(
            lambda v: self.normal(v) + r * v,
            self.A_adjoint(y) + r * z,
            x0=z,
            max_iter=max_iter,
            tol=tol,
        )

    # -- SVD A = U diag(s) V^H (decomposable operators) --------------------------------------
    def singular_values(self) -> Tensor:
        """``s`` over the spectral coordinates (zeros for the null space), shape ``(n,)``."""
        raise NotImplementedError(f"{type(self).__name__} has no SVD (has_svd=False)")

    def V_adjoint(self, x: Tensor) -> Tensor:
        """Spectral coordinates ``V^H x``, shape ``(B, n)``."""
        raise NotImplementedError(f"{type(self).__name__} has no SVD (has_svd=False)")

    def V(self, c: Tensor) -> Tensor:
        """``V c`` back to ``(B, *in_shape)``."""
        raise NotImplementedError(f"{type(self).__name__} has no SVD (has_svd=False)")

    def U_adjoint(self, y: Tensor) -> Tensor:
        """``U^H y`` placed on the spectral coordinates ``(B, n)`` (zero where ``s = 0``)."""
        raise NotImplementedError(f"{type(self).__name__} has no SVD (has_svd=False)")

    # -- checks every operator inherits ------------------------------------------------------
    def adjointness_test(
        self,
        *,
        batch: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device=None,
    ) -> float:
        """Relative error ``|<A x, y> - <x, A^H y>| / (||A x|| ||y||)`` for random ``x, y``."""
        batch = batch or self.batch_size or 2
        x = _randn((batch, *self.in_shape), self.in_complex, dtype, generator, device)
        Ax = self.A(x)
        y = _randn(tuple(Ax.shape), self.out_complex, dtype, generator, device)
        lhs, rhs = inner(Ax, y), inner(x, self.A_adjoint(y))
        scale = inner(Ax, Ax).sqrt() * inner(y, y).sqrt()
        return float(((lhs - rhs).abs() / scale.clamp(min=1e-30)).max())

    def norm(
        self,
        *,
        n_iter: int = 50,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device=None,
    ) -> float:
        """Spectral norm ``||A||_2`` by power iteration on ``A^H A`` (the largest over the batch
        for operators with per-sample parameters)."""
        x = _randn(
            (self.batch_size or 1, *self.in_shape), self.in_complex, dtype, generator, device
        )
        lam = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(n_iter):
            x = x / inner(x, x).sqrt().reshape((-1,) + (1,) * (x.ndim - 1))
            ax = self.normal(x)
            lam = inner(x, ax)
            x = ax
        return float(lam.max()) ** 0.5


def _per_sample(v: float | Tensor, like: Tensor) -> Tensor | float:
    if isinstance(v, Tensor) and v.ndim == 1:
        return v.reshape((-1,) + (1,) * (like.ndim - 1)).to(
            like.real.dtype if like.is_complex() else like.dtype
        )
    return v


def _randn(shape, is_complex: bool, dtype: torch.dtype, generator, device) -> Tensor:
    real = (
        dtype
        if not dtype.is_complex
        else (torch.float64 if dtype == torch.complex128 else torch.float32)
    )
    if is_complex:
        z = torch.randn((*shape, 2), generator=generator, dtype=real, device=device)
        return torch.view_as_complex(z)
    return torch.randn(shape, generator=generator, dtype=real, device=device)


# name -> factory(generator) building a small example instance; one parametrised test runs over it
OPERATORS: dict[str, Callable[[torch.Generator], LinearOperator | Operator]] = {}


def register_operator(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``factory(generator) -> operator`` under ``name`` for the test-suite."""

    def deco(factory):
        if name in OPERATORS:
            raise ValueError(f"operator {name!r} is already registered")
        OPERATORS[name] = factory
        return factory

    return deco
