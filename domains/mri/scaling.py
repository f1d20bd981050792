"""The one place where MRI data move in and out of the priors' intensity scale.

Raw k-space has an arbitrary scale (fastMRI #194: 1e-5..1e-3), and a prior only knows the scale it
was trained on; most "cannot reproduce" reports of diffusion MRI come from this (note 03 §3). Every
prior here is trained on, and every reconstruction runs on, data divided by

    s = ||M_c y|| / sqrt(H W)                                                               (1)

with ``M_c`` the contiguous fully sampled block of columns around DC (:func:`~.masks.center_block`)
and ``||.||`` over all rows (and coils). By Parseval (``F`` unitary) ``s`` is the RMS pixel value
of the low-resolution calibration image, so normalised images have an RMS of about 1 whatever the
mask, coil count (maps with ``sum_c |S_c|^2 = 1``) or scanner scale; only the calibration block is
read, so active acquisition can normalise before choosing any column. Results are multiplied by
``s`` again, noise levels divided by it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .masks import center_block, check_mask

__all__ = ["intensity_scale"]


def intensity_scale(kspace: Tensor, mask: Tensor) -> Tensor:
    """Eq. (1): per-slice scale ``s`` from the calibration block of measured k-space.

    Parameters
    ----------
    kspace : Tensor
        Complex ``(B, H, W)`` (single coil) or ``(B, C, H, W)`` (multi coil); only the
        contiguous sampled block of columns around DC is read.
    mask : Tensor
        Column mask ``(W,)`` or ``(B, W)``; the DC column ``W // 2`` must be sampled.

    Returns
    -------
    Tensor
        ``(B,)`` positive scales in the real dtype of ``kspace``.
    """
    if not isinstance(kspace, Tensor) or not kspace.is_complex() or kspace.ndim not in (3, 4):
        raise ValueError(
            "kspace must be complex (B, H, W) or (B, C, H, W); got"
            f" {tuple(getattr(kspace, 'shape', ()))} of dtype {getattr(kspace, 'dtype', None)}"
        )
    h, w = kspace.shape[-2:]
    m = check_mask(mask, w, batch=kspace.shape[0])
    start, n_low = center_block(m)
    if n_low == 0:
        raise ValueError(
            "the mask does not sample the k-space centre (DC column W // 2), which the intensity"
            " normalisation reads; include a fully sampled centre block (center_fraction > 0)"
        )
    block = kspace[..., start : start + n_low]
    energy = (block.real.square() + block.imag.square()).reshape(kspace.shape[0], -1).sum(-1)
    s = energy.sqrt() / (h * w) ** 0.5
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(
            "the k-space centre is zero or non-finite for some slice, so it cannot be normalised;"
            " check the data (an empty slice?)"
        )
    return s
