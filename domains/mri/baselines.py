"""Classical MRI reconstructions: zero-filled, CG-SENSE and converged TV (ADMM).

All take an operator (:class:`~.physics.SinglecoilMRI`, :class:`~.physics.SenseMRI`, or any
``LinearOperator`` on complex ``(B, H, W)`` images) and its k-space ``y``; they return the complex
image ``(B, H, W)`` (take ``.abs()`` for the fastMRI magnitude target). The regularisation weight
``lam`` is the caller's choice; :func:`oracle_lambda` picks the best one on a grid against a known
target, for benchmarks only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from sciffusion.inverse.operators import LinearOperator, cg
from torch import Tensor

from .fourier import fft2c, ifft2c, rss
from .physics import SinglecoilMRI

__all__ = [
    "LambdaSearch",
    "cg_sense",
    "grad",
    "grad_adjoint",
    "oracle_lambda",
    "rss_zero_filled",
    "tv_admm",
    "tv_objective",
    "zero_filled",
]


def zero_filled(op: LinearOperator, y: Tensor) -> Tensor:
    """Zero-filled reconstruction ``A^H y``: ``F^H M y`` (single coil) or the SENSE coil
    combination ``sum_c conj(S_c) F^H M y_c`` (multi coil), complex ``(B, H, W)``."""
    return op.A_adjoint(y)


def rss_zero_filled(kspace: Tensor) -> Tensor:
    """fastMRI's multi-coil zero-filled image ``sqrt(sum_c |F^H y_c|^2)``, real ``(B, H, W)``
    from k-space ``(B, C, H, W)`` (no coil maps needed)."""
    if kspace.ndim != 4 or not kspace.is_complex():
        raise ValueError(
            f"rss_zero_filled expects complex multi-coil k-space (B, C, H, W); got"
            f" {tuple(kspace.shape)} of dtype {kspace.dtype}"
        )
    return rss(ifft2c(kspace), dim=1)


def cg_sense(
    op: LinearOperator,
    y: Tensor,
    *,
    mu: float = 0.0,
    max_iter: int = 10,
    tol: float = 1e-6,
    x0: Tensor | None = None,
) -> Tensor:
    """CG-SENSE: solve ``(A^H A + mu I) x = A^H y`` by conjugate gradients (Pruessmann 2001).

    With ``mu = 0`` and few iterations (the classic early-stopped CG-SENSE, 10 by default) the
    iteration count is the regulariser; ``mu > 0`` gives Tikhonov-regularised SENSE.
    """
    if mu < 0:
        raise ValueError(f"mu must be >= 0; got {mu}")
    b = op.A_adjoint(y)
    return cg(lambda v: op.normal(v) + mu * v, b, x0, max_iter=max_iter, tol=tol)


def grad(x: Tensor) -> Tensor:
    """Periodic forward differences ``(x[i+1] - x[i])`` over the last two dims:
    ``(B, H, W) -> (B, 2, H, W)`` (rows first)."""
    return torch.stack([torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x], dim=-3)


def grad_adjoint(z: Tensor) -> Tensor:
    """Adjoint of :func:`grad` (``= -div``): ``(B, 2, H, W) -> (B, H, W)``."""
    z0, z1 = z.unbind(-3)
    return (torch.roll(z0, 1, dims=-2) - z0) + (torch.roll(z1, 1, dims=-1) - z1)


def _grad_symbol(h: int, w: int, *, dtype: torch.dtype, device) -> Tensor:
    """``|D|^2`` of the periodic gradient in fft2c's centred layout, ``(H, W)``:
    ``sum_d 2 - 2 cos(2 pi (p_d - N_d // 2) / N_d)``."""
    kr = torch.arange(h, dtype=torch.float64, device=device) - h // 2
    kc = torch.arange(w, dtype=torch.float64, device=device) - w // 2
    sr = 2 - 2 * torch.cos(2 * math.pi * kr / h)
    sc = 2 - 2 * torch.cos(2 * math.pi * kc / w)
    return (sr[:, None] + sc[None, :]).to(dtype)


def _shrink(v: Tensor, t: Tensor | float) -> Tensor:
    """Isotropic soft threshold over the gradient directions (dim -3) and real/imag parts."""
    mag = (v.real.square() + v.imag.square()).sum(-3, keepdim=True).sqrt()
    return v * torch.clamp(1 - t / mag.clamp(min=1e-30), min=0.0)


def tv_objective(op: LinearOperator, x: Tensor, y: Tensor, lam: float | Tensor) -> Tensor:
    """``1/2 ||A x - y||^2 + lam ||grad x||_{2,1}`` per sample, ``(B,)``."""
    r = op.A(x) - y
    data = 0.5 * (r.real.square() + r.imag.square()).reshape(x.shape[0], -1).sum(-1)
    g = grad(x)
    tv = (g.real.square() + g.imag.square()).sum(-3).sqrt().reshape(x.shape[0], -1).sum(-1)
    return data + _lam(lam, x).reshape(-1) * tv


def tv_admm(
    op: LinearOperator,
    y: Tensor,
    *,
    lam: float | Tensor,
    rho: float | Tensor | None = None,
    n_iter: int = 100,
    cg_iter: int = 3,
    x0: Tensor | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Total-variation reconstruction ``argmin_x 1/2 ||A x - y||^2 + lam ||grad x||_{2,1}`` by ADMM.

    Splitting ``z = grad x`` (scaled form, Boyd et al. 2011, Sec. 3.1.1; periodic differences,
    isotropic over directions and complex parts)::

        x <- (A^H A + rho grad^H grad)^-1 (A^H y + rho grad^H (z - u))
        z <- shrink(grad x + u, lam / rho);   u <- u + grad x - z

    For :class:`~.physics.SinglecoilMRI` the x-update is exact in k-space,
    ``x = F^-1[(M y + rho F grad^H(z - u)) / (M + rho |D|^2)]`` (``|D|^2`` the gradient's
    Fourier symbol); for other operators (SENSE) it is ``cg_iter`` warm-started CG steps.

    Parameters
    ----------
    op : LinearOperator
        Forward operator on complex ``(B, H, W)`` images.
    y : Tensor
        Measured k-space (zeros where not sampled).
    lam : float or Tensor
        TV weight, a float or per-sample ``(B,)`` (in units of the image: for a max-1 image
        and ``sigma = 0.01`` k-space noise, ``1e-3``..``1e-2``).
    rho : float or Tensor, optional
        ADMM penalty; default ``10 lam`` (converges in about 100 iterations).
    n_iter, cg_iter : int
        Outer ADMM iterations; inner CG steps for non-Cartesian-single-coil operators.
    x0 : Tensor, optional
        Starting image (default ``A^H y``).
    callback : callable, optional
        ``callback(i, x)`` after each iteration.

    Returns
    -------
    Tensor
        Complex image ``(B, H, W)``.
    """
    if len(op.in_shape) != 2:
        raise ValueError(f"tv_admm needs 2-D images (B, H, W); the operator maps {op.in_shape}")
    aty = op.A_adjoint(y)
    lam_t = _lam(lam, aty)
    if bool((lam_t <= 0).any()):
        raise ValueError(f"lam must be > 0; got {lam}")
    rho_t = 10.0 * lam_t if rho is None else _lam(rho, aty)
    x = aty.clone() if x0 is None else x0.clone()
    z = grad(x)
    u = torch.zeros_like(z)
    rho_x = rho_t.reshape(-1, 1, 1)  # over (B, H, W)
    rho_z = rho_t.reshape(-1, 1, 1, 1)  # over (B, 2, H, W)
    thresh = lam_t.reshape(-1, 1, 1, 1) / rho_z
    exact = isinstance(op, SinglecoilMRI)
    if exact:
        m = op.broadcast_mask(aty)
        den = m + rho_x * _grad_symbol(*op.img_size, dtype=m.dtype, device=m.device)
        my = fft2c(aty)  # = M y for the single-coil operator
        safe = den > 0
    for i in range(n_iter):
        rhs_tv = grad_adjoint(z - u)
        if exact:
            k = (my + rho_x * fft2c(rhs_tv)) / torch.where(safe, den, torch.ones_like(den))
            x = ifft2c(torch.where(safe, k, torch.zeros_like(k)))
        else:
            x = cg(
                lambda v: op.normal(v) + rho_x * grad_adjoint(grad(v)),
                aty + rho_x * rhs_tv,
                x,
                max_iter=cg_iter,
                tol=1e-10,
            )
        gx = grad(x)
        z = _shrink(gx + u, thresh)
        u = u + gx - z
        if callback is not None:
            callback(i, x)
    return x


class LambdaSearch(NamedTuple):
    """Result of :func:`oracle_lambda`."""

    best: float
    lams: list[float]
    scores: list[float]


def oracle_lambda(
    solve: Callable[[float], Tensor],
    lams: Sequence[float],
    target: Tensor,
    *,
    score: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> LambdaSearch:
    """Pick the regularisation weight that maximises ``score`` against a known target.

    For benchmarks only (it needs the ground truth): choose ``lam`` on validation images, then
    report on held-out ones.

    Parameters
    ----------
    solve : callable
        ``solve(lam) -> (B, H, W)`` reconstruction (complex or magnitude).
    lams : sequence of float
        The grid, e.g. ``np.geomspace(3e-4, 3e-2, 9)``.
    target : Tensor
        Magnitude target ``(B, H, W)``.
    score : callable, optional
        ``score(target, magnitude) -> (B,)``, higher is better; default per-image fastMRI PSNR
        (each image its own volume, data range = its max).
    """
    if len(lams) == 0:
        raise ValueError("lams is empty; pass a grid such as numpy.geomspace(3e-4, 3e-2, 9)")
    if score is None:
        from .metrics import per_image_metrics

        def score(t: Tensor, p: Tensor) -> Tensor:
            return per_image_metrics(t, p, which=("psnr",))["psnr"]

    scores = []
    for lam in lams:
        rec = solve(float(lam))
        rec = rec.abs() if rec.is_complex() else rec
        scores.append(float(torch.as_tensor(score(target, rec)).mean()))
    best = max(range(len(lams)), key=lambda i: scores[i])
    return LambdaSearch(float(lams[best]), [float(v) for v in lams], scores)


def _lam(v: float | Tensor, like: Tensor) -> Tensor:
    """A positive weight as a ``(B,)`` real tensor on ``like``'s device and real dtype."""
    dt = like.real.dtype if like.is_complex() else like.dtype
    t = torch.as_tensor(v, dtype=dt, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.shape != (like.shape[0],):
        raise ValueError(
            f"a per-sample weight must be a float or a (B,) tensor with B={like.shape[0]};"
            f" got shape {tuple(t.shape)}"
        )
    return t
