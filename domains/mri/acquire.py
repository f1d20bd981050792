"""Active acquisition: choose k-space columns while the reverse diffusion runs (ADS).

:func:`acquire` starts from the fully sampled calibration block and adds columns up to a budget.
``entropy`` and ``variance`` are Active Diffusion Subsampling (Nolan et al. 2025) with the core's
:func:`sciffusion.inverse.ads.ads`: ``n_particles`` DPS-guided DDIM trajectories share the mask,
and inside the acquisition window the column whose measurement the particles disagree on most is
acquired (``entropy``: the particles' isotropic-GMM entropy of that column, ``variance``: their
summed variance). ``random`` and ``equispaced`` fix the same number of columns before sampling and
are reconstructed by the *same* particle sampler (ADS with no acquisitions), so every strategy is
compared at an equal budget with an equal reconstruction.

Data are normalised by :func:`~.scaling.intensity_scale` of the calibration block (all that is
known before the first choice).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .channels import ChannelMRI, channels_to_image
from .prior import MRIPrior, load_prior
from .recon import build_operator
from .scaling import intensity_scale

__all__ = ["STRATEGIES", "Acquisition", "acquire", "fixed_columns"]

STRATEGIES = ("entropy", "variance", "random", "equispaced")


class Acquisition(NamedTuple):
    """Result of :func:`acquire` (raw units of the input k-space)."""

    mask: Tensor  # (B, W) bool: the final mask
    order: Tensor  # (B, budget) long: columns in acquisition order (calibration block first)
    steps: list[int]  # reverse-process step of each acquisition after the calibration block
    mean: Tensor  # (B, H, W) complex: particle mean (after final data consistency)
    std: Tensor  # (B, H, W) real: per-pixel std of |x| over the particles
    samples: Tensor  # (B, N, H, W) complex particles
    scale: Tensor  # (B,)
    seconds: float  # wall time per slice


def fixed_columns(
    strategy: str, width: int, center: tuple[int, int], budget: int, generator: torch.Generator
) -> list[int]:
    """Non-adaptive columns outside the centre block ``(start, n_low)``: ``random`` (uniform
    without replacement) or ``equispaced`` (evenly spread over the remaining columns)."""
    start, n_low = center
    rest = [c for c in range(width) if not start <= c < start + n_low]
    k = budget - n_low
    if k <= 0:
        return []
    if strategy == "random":
        perm = torch.randperm(len(rest), generator=generator)[:k]
        return sorted(rest[int(i)] for i in perm)
    if strategy == "equispaced":
        return [rest[min(len(rest) - 1, int((j + 0.5) * len(rest) / k))] for j in range(k)]
    raise ValueError(f"fixed_columns takes 'random' or 'equispaced'; got {strategy!r}")


def acquire(
    kspace: Tensor,
    *,
    budget: int,
    strategy: str = "entropy",
    prior: MRIPrior | str | None = None,
    maps: Tensor | None = None,
    center_fraction: float = 0.04,
    n_particles: int = 16,
    nfe: int = 50,
    window: tuple[float, float] = (0.1, 0.7),
    sigma: float = 1.0,
    dps_weight: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> Acquisition:
    """Acquire ``budget`` columns of each slice with ``strategy`` and reconstruct it.

    Parameters
    ----------
    kspace : Tensor
        What the scanner would return for every column: complex ``(B, H, W)`` or
        ``(B, C, H, W)`` (noise included); only acquired columns are read.
    budget : int
        Total number of columns in the final mask, calibration block included (8x at
        ``W = 64``: 8).
    strategy : str
        ``entropy`` | ``variance`` (ADS) | ``random`` | ``equispaced`` (fixed before sampling).
    prior : MRIPrior or str, optional
        An unconditional prior (default: the shipped ``uncond``).
    maps : Tensor, optional
        Coil maps for multi-coil k-space.
    center_fraction : float
        Calibration block ``round(W * center_fraction)`` columns (at least 1), acquired first.
    n_particles, nfe, window
        Particles per slice, DDIM steps, and the part of the reverse process (fractions of the
        steps) in which columns are chosen.
    sigma : float
        GMM bandwidth of the entropy estimate, in normalised k-space units.
    dps_weight : float
        ``omega`` of the DPS-guided DDIM step (unsquared residual norm, as in ADS).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    if not isinstance(kspace, Tensor) or not kspace.is_complex() or kspace.ndim not in (3, 4):
        raise ValueError(
            "kspace must be complex (B, H, W) or (B, C, H, W) with every column present; got"
            f" {tuple(getattr(kspace, 'shape', ()))}"
        )
    if kspace.ndim == 4 and maps is None:
        raise ValueError("multi-coil k-space needs coil maps= (e.g. birdcage_maps or estimated)")
    B, (H, W) = kspace.shape[0], kspace.shape[-2:]
    n_low = max(1, round(W * center_fraction))
    start = (W - n_low + 1) // 2
    if not n_low <= int(budget) <= W:
        raise ValueError(
            f"budget must lie in [{n_low}, {W}] (the calibration block has {n_low} columns, the"
            f" k-space {W}); got {budget}"
        )
    if prior is None or isinstance(prior, str):
        prior = load_prior(prior or "uncond")
    elif not isinstance(prior, MRIPrior):
        from .prior import prior_kind

        prior = MRIPrior(prior, prior_kind(prior), None, {})
    if prior.kind != "uncond":
        raise ValueError(f"acquisition needs an unconditional prior; got a {prior.kind!r} one")
    den = prior.denoiser
    device = next(iter(den.parameters())).device if hasattr(den, "parameters") else "cpu"
    calib = torch.zeros(W, dtype=torch.bool)
    calib[start : start + n_low] = True
    full = torch.ones(W, dtype=torch.bool)
    op_c = build_operator(full, (H, W), maps)
    op_c.check_measurement(kspace)
    scale = intensity_scale(kspace * calib.to(kspace.real.dtype), calib)
    y = (kspace / scale.reshape(-1, *([1] * (kspace.ndim - 1)))).to(device)
    full_op = ChannelMRI(build_operator(full.to(device), (H, W), _to(maps, device)))
    from sciffusion.inverse.ads import ads, line_actions
    from sciffusion.solvers import make_grid

    actions = line_actions(full_op.out_shape, dim=-1)
    grid = make_grid(den.process, int(nfe))
    calib_cols = list(range(start, start + n_low))
    steps_at: list[int] = []

    def record(info: dict) -> None:
        if "acquired" in info:
            steps_at.append(int(info["i"]))
        if callback is not None:
            callback(info)

    t0 = time.perf_counter()
    if strategy in ("entropy", "variance"):
        res = ads(
            den,
            full_op,
            y,
            actions,
            grid,
            budget=int(budget) - n_low,
            n_particles=int(n_particles),
            window=window,
            strategy=strategy,
            sigma=sigma,
            dps_weight=dps_weight,
            initial=calib_cols,
            hard_consistency=False,  # done below with the MRI operator (see _final_dc)
            generator=generator,
            callback=record,
            progress=progress,
        )
        order = res.actions
    else:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        res_list, orders = [], []
        for b in range(B):
            cols = fixed_columns(strategy, W, (start, n_low), int(budget), g)
            r = ads(
                den,
                full_op,
                y[b : b + 1],
                actions,
                grid,
                budget=0,
                n_particles=int(n_particles),
                dps_weight=dps_weight,
                initial=calib_cols + cols,
                hard_consistency=False,
                generator=generator,
                progress=progress,
            )
            res_list.append(r)
            orders.append(torch.tensor(calib_cols + cols))
        res = res_list[0]._replace(
            samples=torch.cat([r.samples for r in res_list]),
            reconstruction=torch.cat([r.reconstruction for r in res_list]),
            mask=torch.cat([r.mask for r in res_list]),
        )
        order = torch.stack(orders)
    mask = res.mask.reshape(B, -1, W).any(1)  # acquired entries -> acquired columns
    samples = _final_dc(res.samples, y, mask, (H, W), _to(maps, device))
    sec = (time.perf_counter() - t0) / B
    s = scale.reshape(-1, 1, 1, 1)
    N = samples.shape[1]
    z = channels_to_image(samples.reshape(B * N, 2, H, W).float().cpu()).reshape(B, N, H, W)
    z = z * s.to(z.real.dtype)
    return Acquisition(
        mask.cpu(),
        order.cpu(),
        steps_at if strategy in ("entropy", "variance") else [],
        z.mean(1),
        z.abs().std(1) if N > 1 else torch.zeros(B, H, W),
        z,
        scale,
        sec,
    )


def _final_dc(
    samples: Tensor, y: Tensor, mask: Tensor, img_size: tuple[int, int], maps: Tensor | None
) -> Tensor:
    """Hard data consistency of the final particles on the acquired columns:
    ``x + A_M^+ (M y - A_M x)`` with the MRI operator of each slice's final mask (exact k-space
    replacement for single coil, CG for SENSE).

    The core's ``ads(hard_consistency=True)`` solves the same projection by generic CG on the
    masked normal operator (to float32 precision); this uses the MRI operator's own
    pseudo-inverse instead, which is closed-form (exact k-space replacement) for single coil.
    """
    out = []
    for b in range(samples.shape[0]):
        mb = None if maps is None else (maps if maps.ndim == 3 else maps[b])
        op = ChannelMRI(build_operator(mask[b].to(samples.device), img_size, mb))
        x = samples[b]
        yb = y[b : b + 1].expand(x.shape[0], *y.shape[1:])
        out.append(x + op.pinv(op.op.broadcast_mask(yb) * yb - op.A(x)))
    return torch.stack(out)


def _to(v: Tensor | None, device) -> Tensor | None:
    return None if v is None else v.to(device)
