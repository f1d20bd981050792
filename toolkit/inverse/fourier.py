"""Centred orthonormal FFT (the fastMRI convention) and the subsampled-Fourier operator.

``F x = fftshift(fftn(ifftshift(x), norm="ortho"))`` over the chosen dims, as ``fastmri.fft2c``;
``F^H = F^-1 = fftshift(ifftn(ifftshift(k), norm="ortho"))``. ``F`` is unitary for odd and even
sizes, so a Cartesian mask ``A = M F`` has ``A^+ = A^H`` for binary masks and the SVD
``U = I, s = M, V^H = F``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .operators import LinearOperator, _per_sample, register_operator

__all__ = ["FFTMask", "fft_c", "ifft_c"]


def fft_c(x: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Centred orthonormal FFT over ``dims`` (``fastmri.fft2c`` on complex tensors)."""
    dims = tuple(dims)
    k = torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho")
    return torch.fft.fftshift(k, dim=dims)


def ifft_c(k: Tensor, dims: Sequence[int] = (-2, -1)) -> Tensor:
    """Inverse of :func:`fft_c` (``fastmri.ifft2c``)."""
    dims = tuple(dims)
    x = torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho")
    return torch.fft.fftshift(x, dim=dims)


class FFTMask(LinearOperator):
    """Subsampled centred Fourier transform ``A x = M . F x`` on complex data (single-coil MRI).

    Parameters
    ----------
    mask
        Sampling mask (binary or non-negative weights), broadcastable to ``in_shape`` (e.g. a
        ``(W,)`` column mask for ``(H, W)`` images), or ``(B, ...)`` with ``per_sample=True``.
    in_shape
        Event shape of the complex image; defaults to the mask's (event) shape.
    dims
        Event dims transformed by ``F`` (negative, counted from the end); default the last two
        (the last one for 1-D data).
    per_sample
        One mask per batch element (its first dim).

    The measurement is zero-filled k-space of shape ``in_shape``. ``pinv``, the prox
    ``F^H [(M y + rho F z) / (M^2 + rho)]`` and the SVD are closed forms.
    """

    has_svd = True
    in_complex = True
    out_complex = True

    def __init__(
        self,
        mask: Tensor,
        *,
        in_shape: tuple[int, ...] | None = None,
        dims: Sequence[int] | None = None,
        per_sample: bool = False,
    ) -> None:
        m = torch.as_tensor(mask).to(torch.float64)
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError("an FFT mask must be finite and non-negative (binary or weights)")
        event = tuple(m.shape[1:]) if per_sample else tuple(m.shape)
        shape = tuple(int(s) for s in in_shape) if in_shape is not None else event
        try:
            torch.broadcast_shapes(event, shape)
            full = m.expand(*((m.shape[0],) if per_sample else ()), *shape)
        except RuntimeError as err:
            raise ValueError(
                f"mask of event shape {event} does not broadcast to in_shape {shape}"
            ) from err
        dims = tuple(range(-min(2, len(shape)), 0)) if dims is None else tuple(int(d) for d in dims)
        if any(d >= 0 or d < -len(shape) for d in dims):
            raise ValueError(f"dims must be negative event dims in [-{len(shape)}, -1]; got {dims}")
        self.mask = full.contiguous()
        self.per_sample = bool(per_sample)
        self.batch_size = int(m.shape[0]) if per_sample else None
        self.dims = dims
        self.in_shape = self.out_shape = shape

    def _m(self, v: Tensor) -> Tensor:
        m = self.mask.to(device=v.device, dtype=v.real.dtype)
        if self.per_sample and m.shape[0] not in (1, v.shape[0]):
            raise ValueError(f"FFTMask: {m.shape[0]} per-sample masks for a batch of {v.shape[0]}")
        return m

    def A(self, x: Tensor) -> Tensor:
        return self._m(x) * fft_c(x, self.dims)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return ifft_c(self._m(y) * y, self.dims)

    def pinv(self, y: Tensor, **_) -> Tensor:
        m = self._m(y)
        inv = torch.where(m > 0, 1 / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(m))
        return ifft_c(inv * y, self.dims)

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        m, r = self._m(z), _per_sample(rho, z)
        return ifft_c((m * y + r * fft_c(z, self.dims)) / (m**2 + r), self.dims)

    def singular_values(self) -> Tensor:
        return (
            self.mask.reshape(self.mask.shape[0], -1) if self.per_sample else self.mask.reshape(-1)
        )

    def V_adjoint(self, x: Tensor) -> Tensor:
        return fft_c(x, self.dims).reshape(x.shape[0], -1)

    def V(self, c: Tensor) -> Tensor:
        return ifft_c(c.reshape(c.shape[0], *self.in_shape), self.dims)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)


@register_operator("fft_mask")
def _fft_mask(g: torch.Generator) -> FFTMask:
    cols = torch.rand(7, generator=g, dtype=torch.float64) > 0.5
    cols[3] = True
    return FFTMask(cols, in_shape=(2, 6, 7))  # 2 coils-like channels, column mask, odd width


@register_operator("fft_mask_per_sample_1d")
def _fft_mask_1d(g: torch.Generator) -> FFTMask:
    return FFTMask(torch.rand(2, 8, generator=g) > 0.5, dims=(-1,), per_sample=True)
