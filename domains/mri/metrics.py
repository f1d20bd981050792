"""fastMRI metrics (NMSE, PSNR, SSIM with the volume maximum), foreground SSIM and calibration.

:func:`nmse`, :func:`psnr` and :func:`ssim` call ``fastmri.evaluate`` itself on float64 numpy
copies: a *volume* ``(S, H, W)`` of magnitude images, data range = the maximum of the whole
ground-truth volume (not per slice: LISTatSNU #217). fastMRI additionally crops knee and brain
images to the central square before scoring; crop first if you compare with published numbers.
On phantoms with a zero background, background noise dominates SSIM: report
:func:`masked_ssim` on :func:`foreground_mask` as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Calibration",
    "calibration",
    "evaluate_volume",
    "foreground_mask",
    "masked_ssim",
    "nmse",
    "per_image_metrics",
    "psnr",
    "ssim",
]

ArrayLike = Tensor | np.ndarray


def _volume(v: ArrayLike, name: str) -> np.ndarray:
    """A real float64 numpy volume ``(S, H, W)`` (a 2-D image becomes one slice)."""
    if isinstance(v, Tensor):
        if v.is_complex():
            raise TypeError(f"{name} is complex; metrics compare magnitudes: pass {name}.abs()")
        v = v.detach().cpu().numpy()
    v = np.asarray(v)
    if np.iscomplexobj(v):
        raise TypeError(f"{name} is complex; metrics compare magnitudes: pass np.abs({name})")
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3:
        raise ValueError(f"{name} must be an image (H, W) or a volume (S, H, W); got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf; metrics need finite images")
    return v.astype(np.float64, copy=False)


def _pair(gt: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    g, p = _volume(gt, "gt"), _volume(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(
            f"gt {g.shape} and pred {p.shape} differ in shape; crop both to the same size"
            " (fastMRI: fastmri.data.transforms.center_crop)"
        )
    return g, p


def nmse(gt: ArrayLike, pred: ArrayLike) -> float:
    """``||gt - pred||^2 / ||gt||^2`` over the volume (``fastmri.evaluate.nmse``)."""
    from fastmri import evaluate

    return float(evaluate.nmse(*_pair(gt, pred)))


def psnr(gt: ArrayLike, pred: ArrayLike, *, maxval: float | None = None) -> float:
    """PSNR in dB with data range ``maxval`` (default: the volume max of ``gt``)
    (``fastmri.evaluate.psnr``, skimage's ``peak_signal_noise_ratio``)."""
    from fastmri import evaluate

    return float(evaluate.psnr(*_pair(gt, pred), maxval=maxval))


def ssim(gt: ArrayLike, pred: ArrayLike, *, maxval: float | None = None) -> float:
    """Mean over slices of skimage SSIM (7x7 uniform window, K = (0.01, 0.03), sample
    covariance), data range ``maxval`` (default: the volume max of ``gt``)
    (``fastmri.evaluate.ssim``, Wang et al. 2004)."""
    from fastmri import evaluate

    return float(evaluate.ssim(*_pair(gt, pred), maxval=maxval)[0])


def evaluate_volume(gt: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """fastMRI's three metrics for one volume: ``{"nmse", "psnr", "ssim"}``."""
    return {"nmse": nmse(gt, pred), "psnr": psnr(gt, pred), "ssim": ssim(gt, pred)}


def masked_ssim(
    gt: ArrayLike, pred: ArrayLike, mask: ArrayLike, *, maxval: float | None = None
) -> float:
    """SSIM averaged over a foreground ``mask`` instead of the whole image.

    The SSIM map is skimage's (same parameters as :func:`ssim`, data range = volume max); per
    slice it is averaged over ``mask`` inside the border strip skimage ignores (3 pixels for the
    7x7 window), then averaged over slices with a non-empty mask. An all-true mask gives
    :func:`ssim` exactly.
    """
    from skimage.metrics import structural_similarity

    g, p = _pair(gt, pred)
    m = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, Tensor) else mask)
    m = (m[None] if m.ndim == 2 else m).astype(bool)
    if m.shape != g.shape:
        raise ValueError(f"mask {m.shape} must match the images {g.shape}")
    maxval = float(g.max()) if maxval is None else maxval
    pad = 3  # (win_size - 1) // 2 for fastMRI's 7x7 window
    values = []
    for s in range(g.shape[0]):
        _, smap = structural_similarity(g[s], p[s], data_range=maxval, full=True)
        inner = (slice(pad, -pad), slice(pad, -pad))
        sel = m[s][inner]
        if sel.any():
            values.append(float(smap[inner][sel].mean(dtype=np.float64)))
    if not values:
        raise ValueError("the foreground mask is empty on every slice; lower the threshold")
    return float(np.mean(values))


def foreground_mask(
    target: ArrayLike, *, threshold: float = 0.1, fill_holes: bool = True
) -> Tensor:
    """Foreground of magnitude images: ``target > threshold * max`` per image, holes filled.

    Parameters
    ----------
    target : Tensor or ndarray
        ``(H, W)`` or ``(B, H, W)`` magnitudes.
    threshold : float
        Fraction of each image's maximum.
    fill_holes : bool
        Fill enclosed dark regions (dark ellipses inside the body stay foreground).

    Returns
    -------
    Tensor
        bool, same shape as ``target``.
    """
    from scipy import ndimage

    if not 0 <= threshold < 1:
        raise ValueError(f"threshold is a fraction of the max in [0, 1); got {threshold}")
    t = _volume(target, "target")
    out = t > threshold * t.reshape(t.shape[0], -1).max(1)[:, None, None]
    if fill_holes:
        out = np.stack([ndimage.binary_fill_holes(o) for o in out])
    res = torch.from_numpy(out)
    return res[0] if np.ndim(target) == 2 else res


def per_image_metrics(
    gt: Tensor,
    pred: Tensor,
    *,
    which: Sequence[str] = ("nmse", "psnr", "ssim"),
    mask: Tensor | None = None,
) -> dict[str, Tensor]:
    """fastMRI metrics with each image of a batch ``(B, H, W)`` as its own one-slice volume.

    The convention for phantom benchmarks (data range = each image's max). ``"fg_ssim"`` in
    ``which`` adds :func:`masked_ssim` over ``mask`` (default :func:`foreground_mask` of ``gt``).
    Returns ``{name: (B,) float64 tensor}``.
    """
    funcs = {"nmse": nmse, "psnr": psnr, "ssim": ssim}
    unknown = set(which) - set(funcs) - {"fg_ssim"}
    if unknown:
        raise ValueError(
            f"unknown metrics {sorted(unknown)}; choose from nmse, psnr, ssim, fg_ssim"
        )
    g, p = _pair(gt, pred)
    out: dict[str, list[float]] = {k: [] for k in which}
    if "fg_ssim" in which and mask is None:
        mask = foreground_mask(g)
    for b in range(g.shape[0]):
        for k in which:
            if k == "fg_ssim":
                out[k].append(masked_ssim(g[b], p[b], mask[b]))
            else:
                out[k].append(funcs[k](g[b], p[b]))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


class Calibration(NamedTuple):
    """Uncertainty calibration of a posterior estimate."""

    coverage: float  # fraction of pixels with |error| <= k std (about 0.95 for k = 2, Gaussian)
    spearman: float  # rank correlation between std and |error|


def calibration(
    estimate: ArrayLike,
    std: ArrayLike,
    gt: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    k: float = 2.0,
) -> Calibration:
    """Coverage of ``|estimate - gt|`` by ``k`` posterior standard deviations and the Spearman
    correlation of ``std`` with ``|estimate - gt|``, over all pixels (or those in ``mask``).

    Inputs are magnitudes (or any real maps) of one shape; ``std`` is the pixelwise posterior
    standard deviation (e.g. over samples of ``|x|``).
    """
    from scipy.stats import spearmanr

    e, s, g = (_volume(v, n) for v, n in ((estimate, "estimate"), (std, "std"), (gt, "gt")))
    if not (e.shape == s.shape == g.shape):
        raise ValueError(f"estimate {e.shape}, std {s.shape} and gt {g.shape} must match")
    if (s < 0).any():
        raise ValueError("std has negative entries; pass a standard deviation")
    err = np.abs(e - g)
    sel = np.ones_like(err, dtype=bool)
    if mask is not None:
        m = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, Tensor) else mask)
        sel = np.broadcast_to(m.astype(bool).reshape((-1, *err.shape[1:])), err.shape)
    err, s = err[sel], s[sel]
    if err.size < 2:
        raise ValueError("calibration needs at least two pixels (check the mask)")
    coverage = float((err <= k * s).mean())
    rho = spearmanr(s, err).statistic
    return Calibration(coverage, float(rho))
