"""Coil sensitivities: birdcage simulation and low-resolution estimation from calibration data.

Maps are complex ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``, RSS-normalised:
``sum_c |S_c|^2 = 1`` at every pixel, so the RSS of the coil images ``S_c x`` equals ``|x|`` and the
SENSE operator has norm ``<= 1``. ESPIRiT is not implemented (sigpy's ``EspiritCalib`` is the
reference if you need it); the low-resolution estimate is what E2E-VarNet starts from.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .fourier import ifft2c, rss
from .masks import center_block, check_mask

__all__ = ["birdcage_maps", "estimate_maps_lowres", "grid_coordinates"]


def grid_coordinates(n: int, *, factor: int = 1, dtype: torch.dtype = torch.float64) -> Tensor:
    """sigpy's normalised pixel coordinates ``(j - n/2) / (n/2)`` on a ``factor``-times finer grid.

    Fine index ``m`` of ``factor * n`` sits at coarse position
    ``j = (m - (factor n) // 2) / factor + n // 2``, so fine pixel ``factor j + ((factor n) // 2 -
    factor (n // 2))`` coincides with coarse pixel ``j``: the alignment that cropping centred
    k-space (DC at ``N // 2``) implies. ``factor = 1`` gives sigpy's grid exactly.
    """
    if not (isinstance(factor, int) and factor >= 1):
        raise ValueError(f"factor must be an int >= 1; got {factor!r}")
    m = torch.arange(factor * n, dtype=dtype)
    j = (m - (factor * n) // 2) / factor + n // 2
    return (j - n / 2.0) / (n / 2.0)


def birdcage_maps(
    n_coils: int,
    shape: tuple[int, int],
    *,
    r: float = 1.5,
    factor: int = 1,
    dtype: torch.dtype = torch.complex64,
) -> Tensor:
    """Birdcage coil sensitivities (sigpy ``birdcage_maps`` formula), RSS-normalised.

    Coil ``c`` is a wire at radius ``r`` (in units of the half field of view) and angle
    ``θ_c = 2π c / C``; its map is ``S_c = exp(i (atan2(x_c, -y_c) - θ_c)) / ρ_c`` with
    ``(x_c, y_c)`` the offset of the pixel from the wire and ``ρ_c`` its length, then
    ``S_c <- S_c / sqrt(sum_c |S_c|^2)`` (sigpy.mri.sim, Ong & Lustig).

    Parameters
    ----------
    n_coils : int
        ``C``.
    shape : (int, int)
        Image size ``(H, W)`` (rows ``y``, columns ``x``).
    r : float
        Relative coil radius (> sqrt(2) keeps the wires outside the square field of view).
    factor : int
        Evaluate on a ``factor``-times finer grid of the same field of view (for simulating
        k-space without the inverse crime, see :func:`grid_coordinates`).
    dtype : torch.dtype
        Complex output dtype.

    Returns
    -------
    Tensor
        ``(C, factor H, factor W)`` complex maps with ``sum_c |S_c|^2 = 1``.
    """
    if not (isinstance(n_coils, int) and n_coils >= 1):
        raise ValueError(f"n_coils must be a positive int; got {n_coils!r}")
    if not r > math.sqrt(2):
        raise ValueError(
            f"r={r} puts a coil wire inside the field of view (singular map); use r > sqrt(2)"
        )
    ny, nx = shape
    y = grid_coordinates(ny, factor=factor)[None, :, None]
    x = grid_coordinates(nx, factor=factor)[None, None, :]
    theta = torch.arange(n_coils, dtype=torch.float64)[:, None, None] * (2 * math.pi / n_coils)
    x_co = x - r * torch.cos(theta)
    y_co = y - r * torch.sin(theta)
    rho = torch.sqrt(x_co**2 + y_co**2)
    phi = torch.atan2(x_co, -y_co) - theta
    maps = torch.polar(1.0 / rho, phi)
    maps = maps / rss(maps, dim=0)
    return maps.to(dtype)


def estimate_maps_lowres(
    kspace: Tensor,
    *,
    num_low_frequencies: int | None = None,
    mask: Tensor | None = None,
    eps: float = 1e-12,
) -> Tensor:
    """Low-resolution coil maps from the fully sampled centre (E2E-VarNet's initial estimate).

    ``S_c = F^-1(ACS_c) / sqrt(sum_c |F^-1(ACS_c)|^2)``, ``ACS_c`` the k-space of coil ``c`` kept on
    the central calibration columns only (Sriram et al. 2020, Sec. 3.2).

    Parameters
    ----------
    kspace : Tensor
        Complex multi-coil k-space ``(B, C, H, W)`` (masked or not).
    num_low_frequencies : int, optional
        Width of the calibration block (fastMRI placement, start ``(W - N_low + 1) // 2``).
    mask : Tensor, optional
        Column mask ``(W,)`` or ``(B, W)``; the contiguous sampled block around DC is used.
        Give exactly one of ``num_low_frequencies`` and ``mask``.
    eps : float
        Pixels whose coil RSS is ``<= eps * max`` get zero maps.

    Returns
    -------
    Tensor
        ``(B, C, H, W)`` maps, ``sum_c |S_c|^2 = 1`` wherever the calibration image is non-zero.
    """
    if not kspace.is_complex() or kspace.ndim != 4:
        raise ValueError(
            f"kspace must be complex multi-coil k-space (B, C, H, W); got shape"
            f" {tuple(kspace.shape)} of dtype {kspace.dtype}"
        )
    w = kspace.shape[-1]
    if (num_low_frequencies is None) == (mask is None):
        raise ValueError("pass exactly one of num_low_frequencies= and mask=")
    if mask is not None:
        start, n_low = center_block(check_mask(mask, w))
    else:
        n_low = int(num_low_frequencies)
        start = (w - n_low + 1) // 2
    if not 0 < n_low <= w:
        raise ValueError(
            f"the calibration block has {n_low} columns; it needs 1..{w} fully sampled central"
            " columns (is the DC column sampled?)"
        )
    acs = torch.zeros_like(kspace)
    acs[..., start : start + n_low] = kspace[..., start : start + n_low]
    img = ifft2c(acs)
    norm = rss(img, dim=1).unsqueeze(1)
    floor = eps * norm.amax(dim=(-3, -2, -1), keepdim=True)
    return torch.where(norm > floor, img / norm.clamp(min=1e-30), torch.zeros_like(img))
