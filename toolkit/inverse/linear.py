"""Concrete linear operators on real or complex data: identity, mask, blur, downsampling, matrix.

Every operator stores its parameters in float64 and casts them to the data's dtype per call, so one
instance serves float32 sampling and float64 oracle tests. Closed forms (no CG) for ``pinv`` and
``prox_l2`` wherever ``A^H A`` is diagonal in a known basis; an SVD (``has_svd``) where DDRM needs
it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .operators import LinearOperator, _per_sample, register_operator

__all__ = ["Blur", "Downsample", "Identity", "Mask", "Matrix", "gaussian_kernel"]


def _real_dtype(v: Tensor) -> torch.dtype:
    return v.real.dtype if v.is_complex() else v.dtype


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class Identity(LinearOperator):
    """``A x = x`` (denoising, and the full operator of pixel-wise active subsampling)."""

    has_svd = True

    def __init__(self, in_shape: tuple[int, ...], *, complex: bool = False) -> None:
        self.in_shape = self.out_shape = tuple(int(s) for s in in_shape)
        self.in_complex = self.out_complex = bool(complex)

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y

    def pinv(self, y: Tensor, **_) -> Tensor:
        return y

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        r = _per_sample(rho, z)
        return (y + r * z) / (1 + r)

    def singular_values(self) -> Tensor:
        return torch.ones(_numel(self.in_shape), dtype=torch.float64)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def V(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.in_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)


class Mask(LinearOperator):
    """Entry-wise mask ``A x = m * x`` with a zero-filled output of the input's shape.

    Parameters
    ----------
    mask
        Binary (or non-negative weight) tensor shaped like one sample, ``in_shape``, or with a
        leading batch dimension ``(B, *in_shape)`` when ``per_sample=True`` (one mask per sample:
        active acquisition, random masks per batch element).
    per_sample
        Whether ``mask`` carries a batch dimension.
    complex
        Whether the data are complex (k-space); real otherwise.

    ``A`` is diagonal, so ``A^+ y = y / m`` (0 where ``m = 0``), the prox is entry-wise
    ``(m y + rho z) / (m^2 + rho)`` and the SVD is trivial (``V = U = I``, ``s = m``).
    """

    has_svd = True

    def __init__(self, mask: Tensor, *, per_sample: bool = False, complex: bool = False) -> None:
        m = torch.as_tensor(mask)
        m = m.to(torch.float64)
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError("a mask must be finite and non-negative (binary or weights)")
        if per_sample and m.ndim < 2:
            raise ValueError(
                f"per_sample=True needs a mask of shape (B, *in_shape); got {tuple(m.shape)}"
            )
        self.mask = m
        self.per_sample = bool(per_sample)
        self.batch_size = int(m.shape[0]) if per_sample else None
        self.in_shape = self.out_shape = tuple(m.shape[1:]) if per_sample else tuple(m.shape)
        self.in_complex = self.out_complex = bool(complex)

    def _m(self, v: Tensor) -> Tensor:
        m = self.mask.to(device=v.device, dtype=_real_dtype(v))
        if self.per_sample and m.shape[0] not in (1, v.shape[0]):
            raise ValueError(
                f"{type(self).__name__}: {m.shape[0]} per-sample masks for a batch of"
                f" {v.shape[0]}; give one mask per sample (or a single shared mask)"
            )
        return m

    def A(self, x: Tensor) -> Tensor:
        return self._m(x) * x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._m(y) * y

    def pinv(self, y: Tensor, **_) -> Tensor:
        m = self._m(y)
        return torch.where(
            m > 0, y / torch.where(m > 0, m, torch.ones_like(m)), torch.zeros_like(y)
        )

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        m, r = self._m(z), _per_sample(rho, z)
        return (m * y + r * z) / (m**2 + r)

    def singular_values(self) -> Tensor:
        return (
            self.mask.reshape(self.mask.shape[0], -1) if self.per_sample else self.mask.reshape(-1)
        )

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    def V(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.in_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)


def gaussian_kernel(size: int, std: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised ``(size, size)`` Gaussian blur kernel of standard deviation ``std`` pixels."""
    if size < 1 or std <= 0:
        raise ValueError(f"need size >= 1 and std > 0; got size={size}, std={std}")
    u = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (u / std) ** 2)
    k = g[:, None] * g[None, :]
    return k / k.sum()


class Blur(LinearOperator):
    """Circular 2-D convolution over the last two dims, ``A x = F^-1 (K . F x)`` (FFT-based).

    Parameters
    ----------
    kernel
        ``(kh, kw)`` kernel, centred (its middle entry sits on the output pixel).
    in_shape
        Event shape ``(..., H, W)``; leading dims (channels) are blurred independently.
    complex
        Complex data (real otherwise; a real kernel keeps real data real).
    rcond
        Transfer-function magnitudes below ``rcond * max|K|`` count as zero in ``pinv``.

    ``A^H A = F^-1 |K|^2 F`` is diagonal in Fourier space: ``pinv`` and the prox
    ``F^-1 [(conj(K) F y + rho F z) / (|K|^2 + rho)]`` are closed forms.
    """

    def __init__(
        self,
        kernel: Tensor,
        in_shape: tuple[int, ...],
        *,
        complex: bool = False,
        rcond: float = 1e-8,
    ) -> None:
        k = torch.as_tensor(kernel, dtype=torch.float64)
        in_shape = tuple(int(s) for s in in_shape)
        if k.ndim != 2 or len(in_shape) < 2:
            raise ValueError(
                f"Blur needs a 2-D kernel and an event shape (..., H, W); got kernel"
                f" {tuple(k.shape)} and in_shape {in_shape}"
            )
        H, W = in_shape[-2:]
        kh, kw = k.shape
        if kh > H or kw > W:
            raise ValueError(f"kernel {tuple(k.shape)} is larger than the image ({H}, {W})")
        pad = torch.zeros(H, W, dtype=torch.float64)
        pad[:kh, :kw] = k
        pad = torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
        self.kernel = k
        self.transfer = torch.fft.fft2(pad)  # (H, W) complex128
        self.in_shape = self.out_shape = in_shape
        self.in_complex = self.out_complex = bool(complex)
        self.rcond = float(rcond)

    def _K(self, v: Tensor) -> Tensor:
        ct = torch.complex128 if _real_dtype(v) == torch.float64 else torch.complex64
        return self.transfer.to(device=v.device, dtype=ct)

    def _back(self, spec: Tensor) -> Tensor:
        out = torch.fft.ifft2(spec)
        return out if self.in_complex else out.real

    def A(self, x: Tensor) -> Tensor:
        return self._back(self._K(x) * torch.fft.fft2(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._back(self._K(y).conj() * torch.fft.fft2(y))

    def pinv(self, y: Tensor, **_) -> Tensor:
        K = self._K(y)
        mag = K.abs()
        keep = mag > self.rcond * mag.max()
        inv = torch.where(keep, 1 / torch.where(keep, K, torch.ones_like(K)), torch.zeros_like(K))
        return self._back(inv * torch.fft.fft2(y))

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        K, r = self._K(z), _per_sample(rho, z)
        num = K.conj() * torch.fft.fft2(y) + r * torch.fft.fft2(z)
        return self._back(num / (K.abs() ** 2 + r))


class Downsample(LinearOperator):
    """Average pooling by ``factor`` over the last two dims (super-resolution), with an SVD.

    ``A A^H = I / f^2``: the singular values are ``1/f`` on the block means and 0 on the
    within-block detail. ``V`` is, per ``f x f`` block, an orthonormal basis whose first vector is
    the constant ``1/f``; spectral coordinates list all block means first, then the details.
    """

    has_svd = True

    def __init__(self, in_shape: tuple[int, ...], factor: int, *, complex: bool = False) -> None:
        in_shape = tuple(int(s) for s in in_shape)
        f = int(factor)
        if len(in_shape) < 2 or f < 1 or in_shape[-1] % f or in_shape[-2] % f:
            raise ValueError(
                f"Downsample needs (..., H, W) divisible by factor; got in_shape {in_shape},"
                f" factor {factor}"
            )
        self.factor = f
        self.in_shape = in_shape
        self.out_shape = (*in_shape[:-2], in_shape[-2] // f, in_shape[-1] // f)
        self.in_complex = self.out_complex = bool(complex)
        # orthonormal basis of one block, first column constant (QR of [1, e_2, ..., e_{f^2}])
        M = torch.eye(f * f, dtype=torch.float64)
        M[:, 0] = 1.0
        Q, _ = torch.linalg.qr(M)
        self.basis = Q * torch.sign(Q[0, 0])  # (f^2, f^2), columns orthonormal

    def _blocks(self, x: Tensor) -> Tensor:
        f = self.factor
        *lead, H, W = x.shape
        b = x.reshape(*lead, H // f, f, W // f, f).movedim(-3, -2)
        return b.reshape(*lead, H // f, W // f, f * f)

    def _unblocks(self, b: Tensor) -> Tensor:
        f = self.factor
        *lead, h, w, _ = b.shape
        return b.reshape(*lead, h, w, f, f).movedim(-2, -3).reshape(*lead, h * f, w * f)

    def A(self, x: Tensor) -> Tensor:
        return self._blocks(x).mean(-1)

    def A_adjoint(self, y: Tensor) -> Tensor:
        f2 = self.factor**2
        return self._unblocks(y[..., None].expand(*y.shape, f2) / f2)

    def pinv(self, y: Tensor, **_) -> Tensor:
        return self.A_adjoint(y) * self.factor**2

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        # (A^H A + rho)^-1 = P / (1/f^2 + rho) + (I - P) / rho, P = block-mean projection
        r, f2 = _per_sample(rho, z), self.factor**2
        b = self.A_adjoint(y)
        v = b + r * z
        Pv = self.A_adjoint(self.A(v)) * f2
        return Pv / (1 / f2 + r) + (v - Pv) / r

    def _basis(self, v: Tensor) -> Tensor:
        return self.basis.to(device=v.device, dtype=_real_dtype(v))

    def singular_values(self) -> Tensor:
        m, n = _numel(self.out_shape), _numel(self.in_shape)
        s = torch.zeros(n, dtype=torch.float64)
        s[:m] = 1.0 / self.factor
        return s

    def V_adjoint(self, x: Tensor) -> Tensor:
        c = self._blocks(x) @ self._basis(x).to(x.dtype)  # (B, ..., h, w, f^2)
        B = x.shape[0]
        return torch.cat([c[..., 0].reshape(B, -1), c[..., 1:].reshape(B, -1)], dim=1)

    def V(self, c: Tensor) -> Tensor:
        B, m = c.shape[0], _numel(self.out_shape)
        f2 = self.factor**2
        first = c[:, :m].reshape(B, *self.out_shape, 1)
        rest = c[:, m:].reshape(B, *self.out_shape, f2 - 1)
        coef = torch.cat([first, rest], dim=-1)
        return self._unblocks(coef @ self._basis(c).to(c.dtype).mT)

    def U_adjoint(self, y: Tensor) -> Tensor:
        B, n = y.shape[0], _numel(self.in_shape)
        out = y.new_zeros(B, n)
        out[:, : _numel(self.out_shape)] = y.reshape(B, -1)
        return out


class Matrix(LinearOperator):
    """A dense matrix ``A (m, n)`` acting on flattened samples, with its SVD (the oracle tests').

    ``in_shape`` / ``out_shape`` default to ``(n,)`` / ``(m,)``. A complex matrix makes a complex
    operator. ``pinv`` and the prox use the SVD (singular values below ``rcond * s_max`` are
    treated as zero in ``pinv``).
    """

    has_svd = True

    def __init__(
        self,
        matrix: Tensor,
        *,
        in_shape: tuple[int, ...] | None = None,
        out_shape: tuple[int, ...] | None = None,
        rcond: float = 1e-10,
    ) -> None:
        M = torch.as_tensor(matrix)
        if M.ndim != 2:
            raise ValueError(f"Matrix needs a 2-D (m, n) tensor; got shape {tuple(M.shape)}")
        M = M.to(torch.complex128 if M.is_complex() else torch.float64)
        m, n = M.shape
        self.in_shape = tuple(in_shape) if in_shape is not None else (n,)
        self.out_shape = tuple(out_shape) if out_shape is not None else (m,)
        if _numel(self.in_shape) != n or _numel(self.out_shape) != m:
            raise ValueError(
                f"in_shape {self.in_shape} / out_shape {self.out_shape} do not match a matrix of"
                f" shape ({m}, {n})"
            )
        self.matrix = M
        self.in_complex = self.out_complex = M.is_complex()
        self.rcond = float(rcond)
        U, S, Vh = torch.linalg.svd(M, full_matrices=True)
        self._U, self._S, self._Vh = U, S, Vh

    def _mat(self, M: Tensor, v: Tensor) -> Tensor:
        return M.to(device=v.device, dtype=v.dtype)

    def A(self, x: Tensor) -> Tensor:
        out = x.reshape(x.shape[0], -1) @ self._mat(self.matrix, x).mT
        return out.reshape(x.shape[0], *self.out_shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        out = y.reshape(y.shape[0], -1) @ self._mat(self.matrix, y).conj()
        return out.reshape(y.shape[0], *self.in_shape)

    def singular_values(self) -> Tensor:
        s = torch.zeros(_numel(self.in_shape), dtype=torch.float64)
        s[: self._S.numel()] = self._S
        return s

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self._mat(self._Vh, x).mT

    def V(self, c: Tensor) -> Tensor:
        return (c @ self._mat(self._Vh, c).conj()).reshape(c.shape[0], *self.in_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        r = self._S.numel()
        uy = y.reshape(y.shape[0], -1) @ self._mat(self._U, y).conj()
        out = uy.new_zeros(y.shape[0], _numel(self.in_shape))
        out[:, :r] = uy[:, :r]
        return out

    def pinv(self, y: Tensor, **_) -> Tensor:
        s = self.singular_values().to(device=y.device, dtype=_real_dtype(y))
        keep = s > self.rcond * s.max()
        inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(self.U_adjoint(y) * inv)

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        s = self.singular_values().to(device=z.device, dtype=_real_dtype(z))
        r = rho.reshape(-1, 1).to(s.dtype) if isinstance(rho, Tensor) and rho.ndim == 1 else rho
        c = self.V_adjoint(self.A_adjoint(y) + _per_sample(rho, z) * z)
        return self.V(c / (s**2 + r))


# -- registry: small example instances for the parametrised operator test -------------------------
@register_operator("identity")
def _identity(g: torch.Generator) -> Identity:
    return Identity((2, 3))


@register_operator("mask")
def _mask(g: torch.Generator) -> Mask:
    return Mask(torch.rand(3, 4, 5, generator=g, dtype=torch.float64) > 0.5)


@register_operator("mask_per_sample")
def _mask_per_sample(g: torch.Generator) -> Mask:
    # two samples, two masks: the operator test uses batch 2
    return Mask(torch.rand(2, 6, 5, generator=g, dtype=torch.float64) > 0.4, per_sample=True)


@register_operator("mask_complex")
def _mask_complex(g: torch.Generator) -> Mask:
    return Mask(torch.rand(4, 4, generator=g, dtype=torch.float64) > 0.5, complex=True)


@register_operator("blur")
def _blur(g: torch.Generator) -> Blur:
    return Blur(gaussian_kernel(3, 0.8), (2, 6, 7))


@register_operator("downsample")
def _downsample(g: torch.Generator) -> Downsample:
    return Downsample((2, 6, 4), 2)


@register_operator("matrix")
def _matrix(g: torch.Generator) -> Matrix:
    return Matrix(torch.randn(4, 7, generator=g, dtype=torch.float64))


@register_operator("matrix_tall_complex")
def _matrix_tall_complex(g: torch.Generator) -> Matrix:
    z = torch.randn(6, 3, 2, generator=g, dtype=torch.float64)
    return Matrix(torch.view_as_complex(z), in_shape=(3,), out_shape=(2, 3))
