"""Cartesian column masks: fastMRI's own mask functions, a variable-density Gaussian, checks.

A mask is a boolean tensor ``(W,)`` (one mask for the batch) or ``(B, W)`` (one per sample) over
k-space **columns** (the phase-encode direction, last dim of ``(..., H, W)``); operators broadcast
it over rows. The fully sampled low-frequency block has ``N_low = round(W * center_fraction)``
columns starting at ``(W - N_low + 1) // 2`` (fastMRI's convention).

The fastMRI kinds call ``fastmri.data.subsample`` itself, so for the same ``seed`` and ``offset``
the mask is the one fastMRI's transforms draw (``seed = tuple(map(ord, fname))`` there).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "MASK_KINDS",
    "Mask",
    "center_block",
    "check_mask",
    "gaussian_mask",
    "make_mask",
    "realised_acceleration",
]

#: mask kind -> fastMRI class name (``None``: ours). Realised rates (fastMRI's behaviour, kept):
#: ``random`` (on average), ``equispaced_fraction`` and ``gaussian`` hit R within 5 %;
#: ``equispaced`` and ``magic`` undershoot (about 0.8 R), ``magic_fraction`` overshoots (~1.07 R).
MASK_KINDS: dict[str, str | None] = {
    "random": "RandomMaskFunc",
    "equispaced": "EquiSpacedMaskFunc",
    "equispaced_fraction": "EquispacedMaskFractionFunc",
    "magic": "MagicMaskFunc",
    "magic_fraction": "MagicMaskFractionFunc",
    "gaussian": None,
}


class Mask(NamedTuple):
    """A column mask and its fully sampled centre."""

    mask: Tensor  # bool (W,) or (B, W)
    num_low_frequencies: int


def make_mask(
    kind: str,
    num_cols: int,
    *,
    acceleration: float,
    center_fraction: float,
    batch: int | None = None,
    seed: int | tuple[int, ...] | None = None,
    offset: int | None = None,
    generator: torch.Generator | None = None,
) -> Mask:
    """Draw a column mask of ``kind`` (one of :data:`MASK_KINDS`).

    Parameters
    ----------
    kind : str
        ``random | equispaced | equispaced_fraction | magic | magic_fraction`` (fastMRI's
        ``fastmri.data.subsample`` classes) or ``gaussian`` (:func:`gaussian_mask`).
    num_cols : int
        Number of k-space columns ``W``.
    acceleration, center_fraction : float
        Target rate ``R`` and fully sampled centre fraction (fastMRI knee: 4 and 0.08, 8 and 0.04).
    batch : int, optional
        Draw ``batch`` independent masks ``(B, W)``; needs ``generator`` (one seed per row).
    seed : int or tuple of int, optional
        fastMRI per-call seed: the same seed gives fastMRI's mask bit for bit.
    offset : int, optional
        Start column of the equispaced / magic patterns (random when omitted).
    generator : torch.Generator, optional
        Source of the seed(s) when ``seed`` is not given.

    Returns
    -------
    Mask
        ``mask`` bool ``(W,)`` or ``(B, W)`` and ``num_low_frequencies``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {sorted(MASK_KINDS)}")
    _check_rate(num_cols, acceleration, center_fraction)
    if batch is not None:
        if generator is None or seed is not None:
            raise ValueError(
                "a batch of masks draws one seed per sample from `generator`; pass generator= and"
                " no seed= (or loop over seeds yourself)"
            )
        rows = [
            make_mask(
                kind,
                num_cols,
                acceleration=acceleration,
                center_fraction=center_fraction,
                offset=offset,
                seed=_draw_seed(generator),
            )
            for _ in range(batch)
        ]
        return Mask(torch.stack([r.mask for r in rows]), rows[0].num_low_frequencies)
    if kind == "gaussian":
        if seed is not None:
            if not isinstance(seed, int):
                raise TypeError(f"the gaussian mask takes an int seed; got {seed!r}")
            generator = torch.Generator().manual_seed(seed)
        if generator is None:
            raise ValueError("the gaussian mask is random: pass generator= or seed=")
        return gaussian_mask(
            num_cols,
            acceleration=acceleration,
            center_fraction=center_fraction,
            generator=generator,
        )
    needs_seed = kind == "random" or offset is None
    if seed is None and generator is not None:
        seed = _draw_seed(generator)
    if seed is None and needs_seed:
        raise ValueError(
            f"the {kind!r} mask draws random numbers: pass seed= (fastMRI-compatible) or"
            " generator=; equispaced and magic kinds with an explicit offset= need neither"
        )
    if float(acceleration).is_integer():
        acceleration = int(acceleration)
    elif kind != "random" and kind != "equispaced_fraction":
        raise ValueError(
            f"the {kind!r} mask steps through columns with stride R, so R must be an integer;"
            f" got acceleration={acceleration}. Use 'random' or 'equispaced_fraction' for"
            " fractional rates."
        )
    from fastmri.data import subsample

    cls = getattr(subsample, MASK_KINDS[kind])
    func = cls([center_fraction], [acceleration], seed=0)
    # a fixed per-call seed replaces fastMRI's stateful stream; seed 0 keeps the
    # acceleration choice deterministic when seed is None (offset given, nothing random)
    mask, num_low = func((1, num_cols, 1), offset, 0 if seed is None else seed)
    return Mask(mask.reshape(num_cols) > 0.5, int(num_low))


def gaussian_mask(
    num_cols: int,
    *,
    acceleration: float,
    center_fraction: float,
    generator: torch.Generator,
    std: float = 0.25,
) -> Mask:
    """Variable-density Gaussian column mask with exactly ``round(W / R)`` sampled columns.

    The centre block (fastMRI placement) is always taken; the remaining
    ``round(W / R) - N_low`` columns are drawn without replacement with probability
    ``p(k) ∝ exp(-k^2 / (2 (std W)^2))``, ``k`` the column's distance from the DC column ``W // 2``
    (score-MRI's ``gaussian1d`` pattern, Chung & Ye 2022).

    Parameters
    ----------
    num_cols : int
        ``W``.
    acceleration, center_fraction : float
        Target rate ``R`` (realised exactly up to rounding) and centre fraction.
    generator : torch.Generator
        Source of the draw.
    std : float
        Standard deviation of the density as a fraction of ``W``.
    """
    _check_rate(num_cols, acceleration, center_fraction)
    if not std > 0:
        raise ValueError(f"std must be > 0 (a fraction of the width); got {std}")
    num_low = round(num_cols * center_fraction)
    target = max(round(num_cols / acceleration), num_low)
    mask = torch.zeros(num_cols, dtype=torch.bool)
    start = (num_cols - num_low + 1) // 2
    mask[start : start + num_low] = True
    k = torch.arange(num_cols, dtype=torch.float64) - num_cols // 2
    weights = torch.exp(-0.5 * (k / (std * num_cols)) ** 2)
    weights[mask] = 0.0
    n_outer = target - num_low
    if n_outer > 0:
        picked = torch.multinomial(weights, n_outer, replacement=False, generator=generator)
        mask[picked] = True
    return Mask(mask, num_low)


def realised_acceleration(mask: Tensor) -> Tensor:
    """Realised rate ``W / (number of sampled columns)``: a scalar for ``(W,)``, ``(B,)`` else."""
    m = mask.to(torch.float64)
    return m.shape[-1] / m.sum(-1).clamp(min=1.0)


def center_block(mask: Tensor) -> tuple[int, int]:
    """``(start, length)`` of the contiguous sampled block around the DC column ``W // 2``.

    For a ``(B, W)`` mask the block common to all rows is returned. ``length`` is 0 when the DC
    column is not sampled.
    """
    m = mask.to(torch.bool)
    if m.ndim == 2:
        m = m.all(0)
    w = m.shape[-1]
    c = w // 2
    if not bool(m[c]):
        return c, 0
    lo, hi = c, c
    while lo > 0 and bool(m[lo - 1]):
        lo -= 1
    while hi < w - 1 and bool(m[hi + 1]):
        hi += 1
    return lo, hi - lo + 1


def check_mask(mask: Tensor, num_cols: int, *, batch: int | None = None) -> Tensor:
    """Validate a column mask and return it as ``bool``.

    Raises a clear error when the mask is not ``(W,)`` / ``(B, W)``, its width differs from the
    k-space width ``num_cols``, its batch differs from ``batch``, or it holds values other than 0
    and 1.
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool or 0/1); got {type(mask).__name__}")
    if mask.ndim not in (1, 2):
        raise ValueError(
            f"mask must be a column mask of shape (W,) or (B, W); got shape {tuple(mask.shape)}."
            " For a fastMRI mask of shape (1, 1, W, 1) use mask.reshape(-1)."
        )
    if mask.shape[-1] != num_cols:
        raise ValueError(
            f"mask width {mask.shape[-1]} does not match the k-space width {num_cols} (columns,"
            " last dim); build the mask with num_cols equal to the k-space width"
        )
    if batch is not None and mask.ndim == 2 and mask.shape[0] != batch:
        raise ValueError(
            f"per-sample mask has {mask.shape[0]} rows but the batch has {batch} samples; pass one"
            " mask row per sample or a single (W,) mask"
        )
    if mask.dtype != torch.bool:
        if mask.is_complex() or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                "mask must hold only 0 and 1 (sampled / not sampled); got other values. Weighted"
                " (soft) masks are not supported by the closed-form pinv / prox."
            )
        mask = mask != 0
    return mask


def _check_rate(num_cols: int, acceleration: float, center_fraction: float) -> None:
    if not (isinstance(num_cols, int) and num_cols >= 2):
        raise ValueError(f"num_cols must be an int >= 2; got {num_cols!r}")
    if not (math.isfinite(acceleration) and acceleration >= 1):
        raise ValueError(f"acceleration must be >= 1 (e.g. 4 or 8); got {acceleration}")
    if not 0 < center_fraction <= 1 / acceleration:
        raise ValueError(
            f"center_fraction must be in (0, 1/acceleration] = (0, {1 / acceleration:.4g}]; got"
            f" {center_fraction} (fastMRI knee: 0.08 at 4x, 0.04 at 8x)"
        )


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
