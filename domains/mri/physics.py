"""Cartesian MRI forward operators on fastMRI's conventions (contract 5).

``SinglecoilMRI``: ``y = M F x``; ``SenseMRI``: ``y_c = M F (S_c x)`` for coils ``c = 1..C``, with
``F`` the centred orthonormal FFT (:func:`~.fourier.fft2c`, i.e. ``fastmri.fft2c``) and ``M`` a
binary column mask ``(W,)`` or ``(B, W)`` broadcast over rows. Images are complex ``(B, H, W)``,
k-space ``(B, H, W)`` or ``(B, C, H, W)``; unsampled k-space entries of ``A x`` are zero. Both
accept complex64 and complex128 and are differentiable (DPS backpropagates through them).

Importing this module registers ``mri_singlecoil`` and ``mri_sense`` in
``sciffusion.inverse.OPERATORS`` (``import sciffusion`` alone does not import it).
"""

from __future__ import annotations

import torch
from sciffusion.inverse.operators import LinearOperator, cg, register_operator
from torch import Tensor

from .coils import birdcage_maps
from .fourier import fft2c, ifft2c
from .masks import check_mask, gaussian_mask

__all__ = ["SenseMRI", "SinglecoilMRI"]


class _CartesianMRI(LinearOperator):
    in_complex = True
    out_complex = True

    def __init__(self, mask: Tensor, img_size: tuple[int, int]) -> None:
        if len(img_size) != 2:
            raise ValueError(f"img_size must be (H, W); got {img_size!r}")
        h, w = (int(v) for v in img_size)
        self.img_size = (h, w)
        self.mask = check_mask(mask, w)
        self.in_shape = (h, w)
        # batch fixed by a per-sample (B, W) mask (LinearOperator.batch_size); None when shared
        self.batch_size = self.mask.shape[0] if self.mask.ndim == 2 else None

    def broadcast_mask(self, like: Tensor) -> Tensor:
        """The mask as ``like``'s real dtype, shaped to broadcast over ``(B, [C,] H, W)``."""
        if self.mask.ndim == 2 and like.shape[0] != self.mask.shape[0]:
            raise ValueError(
                f"{type(self).__name__} holds a per-sample mask for {self.mask.shape[0]} samples"
                f" but got a batch of {like.shape[0]}; use a (W,) mask or one mask row per sample"
            )
        m = self.mask.to(device=like.device, dtype=like.real.dtype)
        m = m[:, None, :] if m.ndim == 2 else m[None, None, :]  # (B|1, 1, W) over (B, H, W)
        return m.reshape(m.shape[0], *([1] * (like.ndim - 2)), like.shape[-1])


class SinglecoilMRI(_CartesianMRI):
    """Single-coil Cartesian MRI ``y = M F x`` (decomposable: ``A = I diag(m) F``).

    Parameters
    ----------
    mask : Tensor
        Binary column mask ``(W,)`` or ``(B, W)`` (bool or 0/1).
    img_size : (int, int)
        Image size ``(H, W)``; ``W`` must equal the mask width.

    Notes
    -----
    ``pinv(y) = F^H M y`` and ``prox_l2(z, ρ, y) = F^H [(ρ F z + M y) / (ρ + M)]`` are exact
    (``M^2 = M``, ``F`` unitary). The SVD has ``V^H = F`` (flattened), singular values ``m``
    broadcast over rows, ``U = I``.
    """

    has_svd = True

    def __init__(self, mask: Tensor, img_size: tuple[int, int]) -> None:
        super().__init__(mask, img_size)
        self.out_shape = self.in_shape

    def A(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.broadcast_mask(x) * fft2c(x)

    def A_adjoint(self, y: Tensor) -> Tensor:
        self._check(y, self.out_shape, True, "the k-space y")
        return ifft2c(self.broadcast_mask(y) * y)

    def normal(self, x: Tensor) -> Tensor:
        return ifft2c(self.broadcast_mask(x) * fft2c(x))

    def pinv(self, y: Tensor, **_: object) -> Tensor:
        """Minimum-norm least squares ``A^+ y = F^H M y`` (exact)."""
        return self.A_adjoint(y)

    def prox_l2(self, z: Tensor, rho: float | Tensor, y: Tensor, **_: object) -> Tensor:
        """``argmin_x 1/2 ||M F x - y||^2 + rho/2 ||x - z||^2``, closed form per k-space entry."""
        self.check_input(z)
        m = self.broadcast_mask(z)
        r = _per_sample(rho, z)
        return ifft2c((r * fft2c(z) + m * y) / (r + m))

    def singular_values(self) -> Tensor:
        """``m`` broadcast over rows and flattened: ``(H W,)`` (``(B, H W)`` per-sample masks)."""
        h, w = self.img_size
        m = self.mask.to(torch.float32)
        return m.unsqueeze(-2).expand(*m.shape[:-1], h, w).reshape(*m.shape[:-1], h * w)

    def V_adjoint(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return fft2c(x).reshape(x.shape[0], -1)

    def V(self, c: Tensor) -> Tensor:
        return ifft2c(c.reshape(c.shape[0], *self.img_size))

    def U_adjoint(self, y: Tensor) -> Tensor:
        return (self.broadcast_mask(y) * y).reshape(y.shape[0], -1)


class SenseMRI(_CartesianMRI):
    """SENSE multi-coil Cartesian MRI ``y_c = M F (S_c x)`` (Pruessmann et al. 1999).

    Parameters
    ----------
    mask : Tensor
        Binary column mask ``(W,)`` or ``(B, W)``.
    maps : Tensor
        Complex coil sensitivities ``(C, H, W)`` (shared) or ``(B, C, H, W)`` (per sample),
        ideally RSS-normalised (``sum_c |S_c|^2 = 1``, then ``||A|| <= 1``).

    Notes
    -----
    ``A^H y = sum_c conj(S_c) F^H (M y_c)``. ``pinv`` and ``prox_l2`` solve the normal equations
    ``(A^H A + ρ I) x = A^H y + ρ z`` by conjugate gradients (no closed form across coils).
    """

    def __init__(self, mask: Tensor, maps: Tensor) -> None:
        if not isinstance(maps, Tensor) or not maps.is_complex() or maps.ndim not in (3, 4):
            raise ValueError(
                "maps must be complex coil sensitivities of shape (C, H, W) or (B, C, H, W); got"
                f" {_describe(maps)}. Simulate them with birdcage_maps or estimate them with"
                " estimate_maps_lowres."
            )
        super().__init__(mask, tuple(maps.shape[-2:]))
        self.maps = maps
        self.n_coils = maps.shape[-3]
        self.out_shape = (self.n_coils, *self.img_size)
        if maps.ndim == 4:
            if self.batch_size is not None and maps.shape[0] != self.batch_size:
                raise ValueError(
                    f"maps are given for {maps.shape[0]} samples but the mask for"
                    f" {self.batch_size}; use matching batches or shared (C, H, W) maps / (W,) mask"
                )
            self.batch_size = maps.shape[0]

    def _s(self, like: Tensor) -> Tensor:
        s = self.maps.to(device=like.device, dtype=like.dtype if like.is_complex() else None)
        if s.ndim == 4 and s.shape[0] != like.shape[0]:
            raise ValueError(
                f"SenseMRI holds per-sample maps for {s.shape[0]} samples but got a batch of"
                f" {like.shape[0]}; use shared (C, H, W) maps or one map set per sample"
            )
        return s if s.ndim == 4 else s.unsqueeze(0)

    def _check_k(self, y: Tensor) -> Tensor:
        if y.ndim == 4 and y.shape[1] != self.n_coils and tuple(y.shape[2:]) == self.img_size:
            raise ValueError(
                f"SenseMRI: k-space has {y.shape[1]} coils but the maps have {self.n_coils};"
                " estimate or simulate maps for the same coils as the data"
            )
        return self._check(y, self.out_shape, True, "the k-space y")

    def check_measurement(self, y: Tensor) -> Tensor:
        self._check_k(y)
        return super().check_measurement(y)

    def coil_images(self, x: Tensor) -> Tensor:
        """``S_c x`` as ``(B, C, H, W)``."""
        return self._s(x) * x.unsqueeze(1)

    def combine(self, coil_images: Tensor) -> Tensor:
        """Adjoint of :meth:`coil_images`: ``sum_c conj(S_c) z_c``, ``(B, H, W)``."""
        return (self._s(coil_images).conj() * coil_images).sum(1)

    def A(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.broadcast_mask(x.unsqueeze(1)) * fft2c(self.coil_images(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        self._check_k(y)
        return self.combine(ifft2c(self.broadcast_mask(y) * y))

    def normal(self, x: Tensor) -> Tensor:
        """``A^H A x = sum_c conj(S_c) F^H M F (S_c x)``, with the centring shifts hoisted.

        ``F^H M F = fftshift . ifft . M' . fft . ifftshift`` with ``M' = ifftshift(M)``, and the
        shifts commute with the pixelwise maps, so the coil loop runs on plain FFTs and only the
        single image is shifted (equal to ``A_adjoint(A(x))`` to round-off; about 2x faster).
        """
        self.check_input(x)
        dims = (-2, -1)
        m = torch.fft.ifftshift(self.broadcast_mask(x.unsqueeze(1)), dim=-1)
        s = torch.fft.ifftshift(self._s(x), dim=dims)
        xs = torch.fft.ifftshift(x, dim=dims).unsqueeze(1)
        k = m * torch.fft.fftn(s * xs, dim=dims, norm="ortho")
        out = (s.conj() * torch.fft.ifftn(k, dim=dims, norm="ortho")).sum(1)
        return torch.fft.fftshift(out, dim=dims)

    def pinv(self, y: Tensor, *, max_iter: int = 200, tol: float | None = None) -> Tensor:
        """Least squares ``(A^H A)^+ A^H y`` by CG from zero (minimum norm).

        ``tol`` (relative normal-equation residual) defaults to 1e-6 in single and 1e-12 in
        double precision: SENSE normal equations are ill-conditioned at high acceleration.
        """
        return cg(self.normal, self.A_adjoint(y), max_iter=max_iter, tol=_tol(tol, y))

    def prox_l2(
        self,
        z: Tensor,
        rho: float | Tensor,
        y: Tensor,
        *,
        max_iter: int = 200,
        tol: float | None = None,
    ) -> Tensor:
        """``(A^H A + rho I)^-1 (A^H y + rho z)`` by CG warm-started at ``z`` (``tol`` as in
        :meth:`pinv`)."""
        return super().prox_l2(z, rho, y, max_iter=max_iter, tol=_tol(tol, z))


def _tol(tol: float | None, like: Tensor) -> float:
    if tol is not None:
        return tol
    return 1e-12 if like.dtype in (torch.complex128, torch.float64) else 1e-6


def _per_sample(v: float | Tensor, like: Tensor) -> float | Tensor:
    if isinstance(v, Tensor):
        v = v.to(device=like.device, dtype=like.real.dtype)
        return v.reshape(-1, *([1] * (like.ndim - 1))) if v.ndim == 1 else v
    return float(v)


def _describe(v: object) -> str:
    if isinstance(v, Tensor):
        return f"shape {tuple(v.shape)} of dtype {v.dtype}"
    return type(v).__name__


@register_operator("mri_singlecoil")
def _example_singlecoil(generator: torch.Generator) -> SinglecoilMRI:
    """Odd-by-even 9 x 10 image, variable-density mask at R = 2."""
    m = gaussian_mask(10, acceleration=2, center_fraction=0.2, generator=generator).mask
    return SinglecoilMRI(m, (9, 10))


@register_operator("mri_sense")
def _example_sense(generator: torch.Generator) -> SenseMRI:
    """4 birdcage coils on an odd-by-even 9 x 10 image, variable-density mask at R = 2."""
    m = gaussian_mask(10, acceleration=2, center_fraction=0.2, generator=generator).mask
    return SenseMRI(m, birdcage_maps(4, (9, 10)))
