"""Centred orthonormal 2-D FFT on complex tensors, on fastMRI's convention, and coil combination.

fastMRI's ``fft2c`` / ``ifft2c`` work on real tensors ``(..., H, W, 2)``; this module is the one
place where sciffusion's ``complex64`` images and k-space cross into that layout
(``torch.view_as_real`` / ``torch.view_as_complex``). Networks see two real channels instead: use
:func:`sciffusion.complex.to_channels` / ``from_channels`` for that, never this module.

Convention (fastMRI, sigpy, deepinv): ``F x = fftshift(fft2(ifftshift(x), norm="ortho"))`` over
the last two dims, so the DC sample sits at index ``(H // 2, W // 2)`` and ``F`` is unitary.
"""

from __future__ import annotations

import fastmri
import torch
from torch import Tensor

__all__ = ["as_complex", "as_real", "crop_readout", "fft2c", "ifft2c", "oversample_readout", "rss"]


def as_real(z: Tensor) -> Tensor:
    """Complex ``(..., H, W)`` -> fastMRI's real layout ``(..., H, W, 2)`` (a view)."""
    if not z.is_complex():
        raise TypeError(
            f"expected a complex tensor (complex64 image or k-space); got dtype {z.dtype}. Build"
            " one with torch.complex(real, imag) or sciffusion.complex.from_channels."
        )
    return torch.view_as_real(z)


def as_complex(x: Tensor) -> Tensor:
    """fastMRI's real layout ``(..., H, W, 2)`` -> complex ``(..., H, W)``."""
    if x.is_complex() or x.shape[-1] != 2:
        raise ValueError(
            f"expected a real tensor whose last dim holds (real, imag) pairs, shape (..., 2);"
            f" got {tuple(x.shape)} of dtype {x.dtype}"
        )
    return torch.view_as_complex(x.contiguous())


def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2-D FFT over the last two dims: ``fastmri.fft2c`` on complex tensors.

    Parameters
    ----------
    x : Tensor
        Complex image ``(..., H, W)`` (complex64 or complex128), any leading dims.

    Returns
    -------
    Tensor
        Complex k-space ``(..., H, W)``, DC at ``(H // 2, W // 2)``; ``||F x|| = ||x||``.
    """
    return as_complex(fastmri.fft2c(as_real(x)))


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c` (``fastmri.ifft2c`` on complex tensors), ``(..., H, W)``."""
    return as_complex(fastmri.ifft2c(as_real(k)))


def rss(x: Tensor, dim: int = 1) -> Tensor:
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|^2)`` over ``dim`` (real output).

    Equals ``fastmri.rss_complex`` on the real layout. With RSS-normalised maps
    (``sum_c |S_c|^2 = 1``) the RSS of the coil images ``S_c x`` is ``|x|``.
    """
    if x.is_complex():
        return (x.real.square() + x.imag.square()).sum(dim).sqrt()
    return x.square().sum(dim).sqrt()


def _fft_rows(x: Tensor, *, inverse: bool) -> Tensor:
    """Centred orthonormal 1-D (i)FFT along rows (dim -2), fastMRI's shift convention."""
    x = torch.fft.ifftshift(x, dim=-2)
    x = (torch.fft.ifft if inverse else torch.fft.fft)(x, dim=-2, norm="ortho")
    return torch.fft.fftshift(x, dim=-2)


def oversample_readout(kspace: Tensor, rows: int) -> Tensor:
    """Emulate a readout-oversampled acquisition: zero-pad the image along rows to ``rows``.

    fastMRI stores k-space with a 2x-oversampled readout (640 rows for a 320-row target). The
    image rows of ``kspace (..., H, W)`` are placed in the centre of ``rows`` rows the way
    ``fastmri.data.transforms.complex_center_crop`` takes them out again (start
    ``(rows - H) // 2``), so ``crop_readout(oversample_readout(k, rows), H) == k`` up to
    round-off. Only rows are transformed: zero (unsampled) columns stay exactly zero.
    """
    _check_complex(kspace)
    h = kspace.shape[-2]
    if rows < h:
        raise ValueError(f"rows={rows} is smaller than the k-space height {h}; pass rows >= {h}")
    hybrid = _fft_rows(kspace, inverse=True)
    top = (rows - h) // 2
    hybrid = torch.nn.functional.pad(hybrid, (0, 0, top, rows - h - top))
    return _fft_rows(hybrid, inverse=False)


def crop_readout(kspace: Tensor, rows: int) -> Tensor:
    """Remove readout oversampling: keep the central ``rows`` image rows, back to k-space.

    Acts along rows only (1-D transforms), so column masks commute with it and unsampled
    columns stay exactly zero.
    """
    _check_complex(kspace)
    h = kspace.shape[-2]
    if rows > h:
        raise ValueError(f"rows={rows} is larger than the k-space height {h}; pass rows <= {h}")
    top = (h - rows) // 2
    return _fft_rows(_fft_rows(kspace, inverse=True)[..., top : top + rows, :], inverse=False)


def _check_complex(k: Tensor) -> None:
    if not k.is_complex():
        raise TypeError(f"expected complex k-space; got dtype {k.dtype}")
