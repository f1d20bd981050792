"""File-level MRI jobs shared by the CLI (``sciffusion mri ...``) and the demo.

fastMRI HDF5 in (validated read-only by :mod:`sciffusion.datasets.mri.fastmri_io`; input files are
never written), results out into one folder: ``reconstructions/<file>.h5`` in fastMRI's submission
layout (``reconstruction`` float32 ``(S, h, w)``, plus ``std``), PNG figures under ``figures/``
and ``metrics.json``. Readout oversampling is removed on reading (the priors work on ``h x w``
images), masks come from the file (test split) or are drawn with fastMRI's per-file seed, and
multi-coil data get low-resolution coil maps from their calibration block.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "AcquireConfig",
    "ReconConfig",
    "evaluate_files",
    "load_volumes",
    "run_acquisition",
    "run_reconstruction",
]


@dataclass
class ReconConfig:
    """Options of ``sciffusion mri reconstruct`` (saved as ``config.toml``)."""

    method: str = "cond"  # a key of recon.METHODS
    model: str = ""  # prior folder; "" = the shipped prior the method needs
    solver: str = ""  # "" = the method's default
    nfe: int = 0  # 0 = the method's default
    n_samples: int = 4
    sigma: float = 0.0  # k-space noise std in the file's units (0: noiseless, hard DC)
    mask_kind: str = "random"  # for files without a mask (train/val split)
    acceleration: float = 8.0
    center_fraction: float = 0.04
    compare: str = "zero_filled,tv"  # extra methods scored alongside ("" for none)
    seed: int = 0
    fast: bool = False


@dataclass
class AcquireConfig:
    """Options of ``sciffusion mri acquire`` (saved as ``config.toml``)."""

    strategy: str = "entropy"  # entropy | variance | random | equispaced
    model: str = ""  # unconditional prior folder; "" = shipped
    acceleration: float = 8.0  # budget = round(W / acceleration) columns
    center_fraction: float = 0.04
    n_particles: int = 16
    nfe: int = 50
    seed: int = 0
    fast: bool = False


class Volume:
    """The slices of one fastMRI file, stacked (oversampling removed)."""

    def __init__(self, path: Path, slices: list) -> None:
        self.path = path
        self.name = slices[0].fname
        self.kspace = torch.stack([s.kspace for s in slices])  # (S, [C,] h, w)
        t = [s.target for s in slices]
        self.target = None if t[0] is None else torch.stack(t)
        self.mask = slices[0].mask
        self.multicoil = self.kspace.ndim == 4


def load_volumes(path: str | Path, *, max_slices: int | None = None) -> list[Volume]:
    """Every file under ``path`` (a ``.h5`` file or a folder of them), validated, read-only."""
    from sciffusion.datasets.mri.fastmri_io import _files, iter_fastmri_slices

    vols = []
    for f in _files(path):
        slices = []
        for s in iter_fastmri_slices(f, crop_oversampling=True):
            slices.append(s)
            if max_slices is not None and len(slices) >= max_slices:
                break
        vols.append(Volume(f, slices))
    return vols


def _mask_for(vol: Volume, kind: str, acceleration: float, cf: float) -> Tensor:
    from .masks import make_mask

    w = vol.kspace.shape[-1]
    if vol.mask is not None:
        if vol.mask.shape[-1] != w:
            raise ValueError(
                f"{vol.name}: mask has {vol.mask.shape[-1]} columns but k-space has {w}"
            )
        return vol.mask
    seed = tuple(map(ord, vol.name))  # fastMRI's per-file seed: one fixed mask per volume
    return make_mask(kind, w, acceleration=acceleration, center_fraction=cf, seed=seed).mask


def _maps_for(vol: Volume, mask: Tensor) -> Tensor | None:
    if not vol.multicoil:
        return None
    from .coils import estimate_maps_lowres

    y = vol.kspace * mask.to(vol.kspace.real.dtype)
    return estimate_maps_lowres(y, mask=mask)


def _write_recon_h5(path: Path, recon: Tensor, std: Tensor | None, *, force: bool) -> Path:
    import h5py
    from sciffusion._files import atomic_path

    with atomic_path(path, force=force) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=recon.abs().float().numpy())
            if std is not None:
                f.create_dataset("std", data=std.float().numpy())
    return path


def _score(target: Tensor, rec: Tensor) -> dict[str, float]:
    from .metrics import evaluate_volume, foreground_mask, masked_ssim

    m = evaluate_volume(target, rec.abs())
    fg = foreground_mask(target)
    m["fg_ssim"] = float(
        np.mean([masked_ssim(target[i], rec[i].abs(), fg[i]) for i in range(target.shape[0])])
    )
    return {k: float(v) for k, v in m.items()}


def run_reconstruction(
    inputs: str | Path,
    out_dir: Path,
    cfg: ReconConfig,
    *,
    device: str = "cpu",
    prior: Any = None,
    max_slices: int | None = None,
    log=print,
    force: bool = False,
) -> dict[str, Any]:
    """Reconstruct every volume under ``inputs`` with ``cfg.method`` (+ ``cfg.compare``).

    Writes ``reconstructions/<file>.h5`` (the main method), ``figures/<stem>.png`` (zero-filled,
    reconstruction, target and error, std, mask) and returns ``{file: {method: metrics}}`` (metrics
    only where the file has a target), also written to ``metrics.json``.
    """
    from sciffusion._files import atomic_write_text

    from .figures import save_recon_figure
    from .prior import load_prior
    from .recon import METHODS, reconstruct

    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {sorted(METHODS)}")
    extra = [m.strip() for m in cfg.compare.split(",") if m.strip()]
    for m in extra:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} in compare; choose from {sorted(METHODS)}")
    spec = METHODS[cfg.method]
    vols = load_volumes(inputs, max_slices=max_slices)  # validate the input first
    if prior is None and spec.prior is not None:
        prior = load_prior(cfg.model or spec.prior, device=device)
    results: dict[str, Any] = {}
    for vol in vols:
        mask = _mask_for(vol, cfg.mask_kind, cfg.acceleration, cfg.center_fraction)
        maps = _maps_for(vol, mask)
        g = torch.Generator().manual_seed(cfg.seed)
        res: dict[str, Any] = {}
        recs = {}
        for method in [cfg.method, *[m for m in extra if m != cfg.method]]:
            r = reconstruct(
                vol.kspace,
                mask,
                method=method,
                prior=prior if method == cfg.method else None,
                maps=maps,
                sigma=cfg.sigma,
                solver=cfg.solver or None,
                nfe=cfg.nfe or None,
                n_samples=cfg.n_samples,
                generator=g,
            )
            recs[method] = r
            row: dict[str, Any] = {"seconds_per_slice": round(r.seconds, 3), "nfe": r.nfe}
            if vol.target is not None:
                row.update(_score(vol.target, r.mean))
            res[method] = row
            log(f"{vol.name} {method}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
        main = recs[cfg.method]
        _write_recon_h5(out_dir / "reconstructions" / vol.name, main.mean, main.std, force=force)
        zf = recs["zero_filled"].mean if "zero_filled" in recs else None
        save_recon_figure(
            out_dir / "figures" / f"{Path(vol.name).stem}.png",
            main.mean,
            target=vol.target,
            zero_filled=zf,
            std=main.std if cfg.n_samples > 1 and spec.prior is not None else None,
            mask=mask,
            title=f"{vol.name}: {cfg.method}",
        )
        results[vol.name] = res
    atomic_write_text(out_dir / "metrics.json", json.dumps(results, indent=2) + "\n")
    return results


def run_acquisition(
    inputs: str | Path,
    out_dir: Path,
    cfg: AcquireConfig,
    *,
    device: str = "cpu",
    prior: Any = None,
    max_slices: int | None = None,
    log=print,
) -> dict[str, Any]:
    """Acquire columns actively for every volume under ``inputs`` (files must be fully sampled:
    train/val split); writes the final masks, figures of the mask over time and the
    reconstruction, and ``metrics.json``."""
    from sciffusion._files import atomic_write_text

    from .acquire import STRATEGIES, acquire
    from .figures import save_acquisition_figure, save_recon_figure
    from .prior import load_prior

    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; choose one of {STRATEGIES}")
    vols = load_volumes(inputs, max_slices=max_slices)  # validate the input first
    if prior is None:
        prior = load_prior(cfg.model or "uncond", device=device)
    results: dict[str, Any] = {}
    for vol in vols:
        if vol.mask is not None:
            raise ValueError(
                f"{vol.name} is a test-split file (undersampled, with a mask): active acquisition"
                " needs fully sampled k-space to acquire from; use a train/val file"
            )
        maps = None
        if vol.multicoil:
            from .coils import estimate_maps_lowres

            maps = estimate_maps_lowres(vol.kspace)
        W = vol.kspace.shape[-1]
        budget = round(W / cfg.acceleration)
        a = acquire(
            vol.kspace,
            budget=budget,
            strategy=cfg.strategy,
            prior=prior,
            maps=maps,
            center_fraction=cfg.center_fraction,
            n_particles=cfg.n_particles,
            nfe=cfg.nfe,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        stem = Path(vol.name).stem
        n_low = max(1, round(W * cfg.center_fraction))
        save_acquisition_figure(
            out_dir / "figures" / f"{stem}_mask.png",
            a.order,
            W,
            steps=a.steps,
            n_steps=cfg.nfe,
            n_initial=n_low,
            title=f"{vol.name}: {cfg.strategy}",
        )
        save_recon_figure(
            out_dir / "figures" / f"{stem}_recon.png",
            a.mean,
            target=vol.target,
            std=a.std,
            mask=a.mask,
            title=f"{vol.name}: {cfg.strategy}, {budget} columns",
        )
        row: dict[str, Any] = {
            "budget": budget,
            "columns": a.order.tolist(),
            "seconds_per_slice": round(a.seconds, 3),
        }
        if vol.target is not None:
            row.update(_score(vol.target, a.mean))
        log(f"{vol.name} {cfg.strategy}: psnr {row.get('psnr', float('nan')):.2f}")
        results[vol.name] = row
    atomic_write_text(out_dir / "metrics.json", json.dumps(results, indent=2) + "\n")
    return results


def evaluate_files(targets: str | Path, recons: str | Path) -> dict[str, dict[str, float]]:
    """fastMRI metrics (volume max, NMSE/PSNR/SSIM + foreground SSIM) of reconstruction files
    (``reconstruction`` key, as written by ``reconstruct``) against target files of the same
    name; both opened read-only."""
    import h5py
    from sciffusion.datasets.mri.fastmri_io import _files, inspect_fastmri_file

    out = {}
    rec_root = Path(recons)
    for f in _files(targets):
        info = inspect_fastmri_file(f)
        if info.target_key is None:
            raise ValueError(f"{f.name} has no target ({info.challenge} test split)")
        rf = rec_root / f.name if rec_root.is_dir() else rec_root
        if not rf.is_file():
            raise FileNotFoundError(f"no reconstruction {rf} for target {f.name}")
        with h5py.File(f, "r") as ft, h5py.File(rf, "r") as fr:
            if "reconstruction" not in fr:
                raise KeyError(f"{rf}: missing dataset 'reconstruction' (has {sorted(fr.keys())})")
            gt = torch.from_numpy(np.asarray(ft[info.target_key][()], dtype=np.float32))
            rec = np.asarray(fr["reconstruction"][()])
            ok = rec.ndim == 3 and 1 <= rec.shape[0] <= gt.shape[0]
            if rec.dtype.kind not in "fc" or not ok or rec.shape[1:] != tuple(gt.shape[1:]):
                raise ValueError(
                    f"{rf.name}: reconstruction has shape {rec.shape} and dtype {rec.dtype};"
                    f" expected real {tuple(gt.shape)} like the target (or its first slices)"
                )
            gt = gt[: rec.shape[0]]  # --max-slices runs score the slices they reconstructed
            rec_t = torch.from_numpy(np.abs(rec).astype(np.float32))
        out[f.name] = _score(gt, rec_t)
    return out


def config_dict(cfg) -> dict[str, Any]:
    """A config dataclass as a plain dict (for summaries)."""
    return asdict(cfg)
