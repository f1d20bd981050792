"""Random-ellipse MRI phantoms (phase, bias, texture, coils, noise) without the inverse crime.

Each phantom is a body shell (a bright rim around a darker interior) holding 6-13 signed ellipses,
times a linear bias field, a mild (5 %) smooth multiplicative texture and a smooth random phase
(a random quadratic polynomial). All draws come from an explicit ``torch.Generator``.

**No inverse crime.** The object is drawn on a grid ``factor`` (2) times finer than the
reconstruction grid, transformed with the centred orthonormal FFT and *cropped in k-space* to the
central ``H x W`` samples (divided by ``factor`` to keep the orthonormal scale). The data are thus
the low-frequency samples of a sharper continuous-like object, not the FFT of the piecewise-constant
image a reconstruction represents, so TV and learned priors do not get the unrealistically perfect
fits of same-grid simulation (Guerquin-Kern et al. 2012). Multi-coil data multiply by birdcage
maps on the fine grid before the FFT. Reference images are defined from the cropped k-space (the
fully sampled, noise-free reconstruction), scaled so that each target has maximum 1.

Noise is complex white Gaussian in k-space with standard deviation ``sigma`` in each of the real
and imaginary parts; the orthonormal FFT carries the same per-pixel statistics into the image.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from sciffusion.domains.mri.coils import birdcage_maps, grid_coordinates
from sciffusion.domains.mri.fourier import fft2c, ifft2c, rss
from torch import Tensor

__all__ = [
    "PhantomBatch",
    "add_noise",
    "ellipse_phantom",
    "estimate_noise_sigma",
    "simulate_phantoms",
]


class PhantomBatch(NamedTuple):
    """Simulated acquisitions: everything a reconstruction benchmark needs."""

    image: Tensor  # (B, H, W) complex: the noise-free band-limited object
    kspace: Tensor  # (B, [C,] H, W) complex: fully sampled k-space with noise
    target: Tensor  # (B, H, W) real: noise-free |image| (1 coil) or coil RSS (C coils), max 1
    maps: Tensor | None  # (C, H, W) complex birdcage maps on the reconstruction grid (or None)
    sigma: float  # noise std per real / imaginary part


def _uniform(generator: torch.Generator, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)


def _ellipse(u: Tensor, v: Tensor, cx, cy, a, b, angle) -> Tensor:
    """Indicator of the ellipse with centre ``(cx, cy)``, semi-axes ``(a, b)``, rotation ``angle``
    on coordinates ``u`` (columns) and ``v`` (rows)."""
    c, s = math.cos(angle), math.sin(angle)
    du, dv = u - cx, v - cy
    p = (c * du + s * dv) / a
    q = (-s * du + c * dv) / b
    return (p * p + q * q <= 1.0).to(u.dtype)


def _smooth_noise(shape: tuple[int, int], corr: float, generator: torch.Generator) -> Tensor:
    """Unit-variance Gaussian random field with Gaussian correlation length ``corr`` pixels."""
    white = torch.randn(shape, generator=generator, dtype=torch.float64)
    fr = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    fc = torch.fft.fftfreq(shape[1], dtype=torch.float64)[None, :]
    filt = torch.exp(-2 * (math.pi * corr) ** 2 * (fr**2 + fc**2))
    field = torch.fft.ifft2(torch.fft.fft2(white) * filt).real
    return (field - field.mean()) / field.std().clamp(min=1e-12)


def ellipse_phantom(
    size: int | tuple[int, int],
    *,
    generator: torch.Generator,
    factor: int = 2,
    n_ellipses: tuple[int, int] = (6, 13),
    texture: float = 0.05,
    bias: float = 0.3,
    phase: float = 0.5 * math.pi,
) -> Tensor:
    """One random complex ellipse phantom on the ``factor``-times finer simulation grid.

    Parameters
    ----------
    size : int or (int, int)
        Reconstruction grid ``(H, W)``; the phantom is ``(factor H, factor W)``.
    generator : torch.Generator
        Source of every draw.
    factor : int
        Simulation oversampling (1 draws on the reconstruction grid: an inverse crime).
    n_ellipses : (int, int)
        Inclusive range of the number of signed inner ellipses.
    texture : float
        Relative amplitude of the smooth multiplicative texture.
    bias : float
        Maximum slope of the linear bias field ``1 + b_u u + b_v v`` over ``u, v in [-1, 1)``.
    phase : float
        Multiply by ``exp(i phi)``,
        ``phi = c_0 + c_1 u + c_2 v + (c_3 u^2 + c_4 v^2 + c_5 u v) / 2`` with
        ``c_0 ~ U[-pi, pi)`` and ``c_1..c_5 ~ U[-phase, phase]`` (0: a real, >= 0 image).

    Returns
    -------
    Tensor
        complex128 ``(factor H, factor W)``; magnitude roughly in ``[0, 1.4]`` (not normalised).
    """
    h, w = (size, size) if isinstance(size, int) else size
    lo, hi = n_ellipses
    if not 0 <= lo <= hi:
        raise ValueError(
            f"n_ellipses must be an inclusive range (lo, hi) with 0 <= lo <= hi; got {n_ellipses}"
        )
    v = grid_coordinates(h, factor=factor)[:, None].expand(factor * h, factor * w)
    u = grid_coordinates(w, factor=factor)[None, :].expand(factor * h, factor * w)

    def r(lo_: float, hi_: float) -> float:
        return float(_uniform(generator, lo_, hi_))

    # body: bright shell (fat) around a darker interior
    a, b = r(0.72, 0.92), r(0.62, 0.88)
    cx, cy, ang = r(-0.04, 0.04), r(-0.04, 0.04), r(-math.pi / 8, math.pi / 8)
    th = r(0.05, 0.10)
    outer = _ellipse(u, v, cx, cy, a, b, ang)
    inner = _ellipse(u, v, cx, cy, a - th, b - th, ang)
    shell, base = r(0.7, 1.0), r(0.3, 0.55)
    img = shell * outer + (base - shell) * inner
    # signed inner ellipses, clipped to the interior
    n = int(torch.randint(lo, hi + 1, (1,), generator=generator))
    add = torch.zeros_like(u)
    for _ in range(n):
        rad, t = math.sqrt(r(0.0, 1.0)) * 0.8, r(0.0, 2 * math.pi)
        px, py = (a - th) * rad * math.cos(t), (b - th) * rad * math.sin(t)
        ex = cx + math.cos(ang) * px - math.sin(ang) * py
        ey = cy + math.sin(ang) * px + math.cos(ang) * py
        major = r(0.05, 0.35)
        minor = major * r(0.3, 1.0)
        sign = 1.0 if r(0.0, 1.0) < 0.5 else -1.0
        add = add + sign * r(0.08, 0.4) * _ellipse(u, v, ex, ey, major, minor, r(0.0, math.pi))
    img = (img + add * inner).clamp(min=0.0)
    # linear bias field and mild texture (correlation length ~ 1.5 reconstruction pixels)
    img = img * (1 + r(-bias, bias) * u + r(-bias, bias) * v)
    img = img * (1 + texture * _smooth_noise((factor * h, factor * w), 1.5 * factor, generator))
    img = img.clamp(min=0.0)
    if phase == 0:
        return img.to(torch.complex128)
    c = [r(-math.pi, math.pi)] + [r(-phase, phase) for _ in range(5)]
    phi = c[0] + c[1] * u + c[2] * v + 0.5 * (c[3] * u * u + c[4] * v * v + c[5] * u * v)
    return torch.polar(img, phi)


def _crop_kspace(k: Tensor, size: tuple[int, int], factor: int) -> Tensor:
    """Central ``size`` samples of centred k-space (DC stays at ``N // 2``), orthonormal scale."""
    (h, w), (hf, wf) = size, k.shape[-2:]
    r0, c0 = hf // 2 - h // 2, wf // 2 - w // 2
    return k[..., r0 : r0 + h, c0 : c0 + w] / factor


def add_noise(kspace: Tensor, sigma: float, *, generator: torch.Generator) -> Tensor:
    """``k + sigma (n_r + i n_i)`` with ``n_r, n_i ~ N(0, 1)`` i.i.d. (a new tensor)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    if sigma == 0:
        return kspace.clone()
    noise = torch.randn(
        (*kspace.shape, 2), generator=generator, dtype=kspace.real.dtype, device=kspace.device
    )
    return kspace + sigma * torch.view_as_complex(noise)


def simulate_phantoms(
    n: int,
    size: int | tuple[int, int],
    *,
    generator: torch.Generator,
    coils: int | None = None,
    sigma: float = 0.0,
    factor: int = 2,
    dtype: torch.dtype = torch.complex64,
    **phantom_kw,
) -> PhantomBatch:
    """Simulate ``n`` fully sampled single- or multi-coil acquisitions of random ellipse phantoms.

    Parameters
    ----------
    n : int
        Batch size.
    size : int or (int, int)
        Reconstruction grid ``(H, W)``.
    generator : torch.Generator
        Source of every draw (phantoms first, then noise).
    coils : int, optional
        Number of birdcage coils (``None``: single coil).
    sigma : float
        k-space noise std per real / imaginary part (targets have max 1, so ``0.01`` is ~40 dB).
    factor : int
        Simulation grid oversampling (2: no inverse crime; 1: same grid, an inverse crime).
    dtype : torch.dtype
        Complex output dtype (targets get the matching real dtype).
    **phantom_kw
        Passed to :func:`ellipse_phantom` (``n_ellipses``, ``texture``, ``bias``, ``phase``).

    Returns
    -------
    PhantomBatch
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"factor must be an int >= 1; got {factor!r}")
    fine = torch.stack(
        [
            ellipse_phantom((h, w), generator=generator, factor=factor, **phantom_kw)
            for _ in range(n)
        ]
    )
    image = ifft2c(_crop_kspace(fft2c(fine), (h, w), factor))
    maps = None
    if coils is None:
        clean = fft2c(image)
        target = image.abs()
    else:
        maps_f = birdcage_maps(coils, (h, w), factor=factor, dtype=torch.complex128)
        clean = _crop_kspace(fft2c(maps_f * fine[:, None]), (h, w), factor)
        target = rss(ifft2c(clean), dim=1)
        maps = birdcage_maps(coils, (h, w), dtype=dtype)
    scale = 1.0 / target.reshape(n, -1).amax(-1).clamp(min=1e-12)
    image = image * scale[:, None, None]
    target = target * scale[:, None, None]
    clean = clean * scale.reshape(-1, *([1] * (clean.ndim - 1)))
    kspace = add_noise(clean, sigma, generator=generator)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return PhantomBatch(image.to(dtype), kspace.to(dtype), target.to(real), maps, float(sigma))


def estimate_noise_sigma(image: Tensor, background: Tensor) -> float:
    """Noise std per real / imaginary part from a complex image's signal-free ``background``.

    With the orthonormal FFT, white k-space noise of std ``sigma`` per part stays white with
    the same std in the fully sampled image: this pools the real and imaginary parts of the
    background pixels. ``background`` (bool) must broadcast against ``image``: ``(H, W)``,
    ``(B, H, W)`` for ``(B, H, W)`` images, ``(B, 1, H, W)`` for coil images ``(B, C, H, W)``.
    """
    if not image.is_complex():
        raise TypeError("estimate_noise_sigma needs the complex image (before taking |.|)")
    try:
        bg = torch.broadcast_to(background.to(torch.bool), image.shape)
    except RuntimeError:
        raise ValueError(
            f"background {tuple(background.shape)} does not broadcast against the image"
            f" {tuple(image.shape)}; for coil images (B, C, H, W) pass a (B, 1, H, W) mask"
        ) from None
    vals = torch.view_as_real(image[bg])
    if vals.numel() < 4:
        raise ValueError("the background mask selects fewer than 2 pixels")
    return float(vals.to(torch.float64).std())
