"""Classical baselines on simulated ellipse phantoms (note 03 §4, B2/B3): the numbers to beat.

For each image size, acceleration and coil count: random fastMRI masks (cf 0.08 at 4x, 0.04 at
8x, one mask per phantom), complex k-space noise ``sigma``, zero-filled, CG-SENSE (multi coil, true
and ACS-estimated maps) and TV-ADMM with ``lam`` chosen on *validation* phantoms
(:func:`~.baselines.oracle_lambda`) and scored on *held-out* phantoms. Metrics are fastMRI's
(each image its own volume) plus foreground SSIM.

Run ``python -m sciffusion.domains.mri.benchmark [--fast]``; it prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .baselines import cg_sense, oracle_lambda, rss_zero_filled, tv_admm, zero_filled
from .coils import estimate_maps_lowres
from .masks import make_mask
from .metrics import per_image_metrics
from .physics import SenseMRI, SinglecoilMRI

__all__ = ["baseline_benchmark", "format_table"]

LAMS = tuple(float(v) for v in np.geomspace(3e-4, 3e-2, 9))


def _setting(size, coils, acc, cf, n, sigma, seed):
    from sciffusion.datasets.mri.phantoms import simulate_phantoms

    g = torch.Generator().manual_seed(seed)
    pb = simulate_phantoms(n, size, generator=g, coils=coils, sigma=sigma)
    masks = make_mask(
        "random", size, acceleration=acc, center_fraction=cf, batch=n, generator=g
    ).mask
    if coils is None:
        op = SinglecoilMRI(masks, (size, size))
    else:
        op = SenseMRI(masks, pb.maps)
    y = op.broadcast_mask(pb.kspace) * pb.kspace
    return pb, op, y, masks


def baseline_benchmark(
    *,
    sizes: Sequence[int] = (64, 128),
    accelerations: Sequence[tuple[float, float]] = ((4, 0.08), (8, 0.04)),
    coils: Sequence[int | None] = (None, 8),
    n_val: int = 4,
    n_test: int = 8,
    sigma: float = 0.01,
    lams: Sequence[float] = LAMS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Run the baseline grid; one row per (size, coils, acceleration, method).

    Validation phantoms use seed ``seed``, held-out ones ``seed + 1000`` (different phantoms,
    noise and masks). Each row: ``size, coils, R, method, lam, psnr, ssim, fg_ssim, nmse`` (means
    over the held-out phantoms) and ``sec`` (wall time per image of the method on the held-out
    batch).
    """
    rows = []
    for size in sizes:
        for nc in coils:
            for acc, cf in accelerations:
                val = _setting(size, nc, acc, cf, n_val, sigma, seed)
                test = _setting(size, nc, acc, cf, n_test, sigma, seed + 1000)
                pb, op, y, masks = test
                methods: list[tuple[str, float | None, Callable[[], Tensor]]] = []
                if nc is None:
                    methods.append(("zero-filled", None, lambda op=op, y=y: zero_filled(op, y)))
                else:
                    methods.append(("zero-filled RSS", None, lambda y=y: rss_zero_filled(y)))
                    methods.append(
                        ("CG-SENSE (10 it)", None, lambda op=op, y=y: cg_sense(op, y, max_iter=10))
                    )
                    est = estimate_maps_lowres(y, mask=masks)
                    op_est = SenseMRI(masks, est)
                    methods.append(
                        (
                            "CG-SENSE est. maps",
                            None,
                            lambda op=op_est, y=y: cg_sense(op, y, max_iter=10),
                        )
                    )
                vpb, vop, vy, _ = val
                search = oracle_lambda(
                    lambda lam, vop=vop, vy=vy: tv_admm(vop, vy, lam=lam), lams, vpb.target
                )
                name = "TV-ADMM" if nc is None else "TV-SENSE"
                methods.append(
                    (name, search.best, lambda op=op, y=y, lam=search.best: tv_admm(op, y, lam=lam))
                )
                for method, lam, fn in methods:
                    t0 = time.perf_counter()
                    rec = fn()
                    sec = (time.perf_counter() - t0) / pb.target.shape[0]
                    mag = rec.abs() if rec.is_complex() else rec
                    m = per_image_metrics(pb.target, mag, which=("nmse", "psnr", "ssim", "fg_ssim"))
                    row = {
                        "size": size,
                        "coils": 1 if nc is None else nc,
                        "R": acc,
                        "method": method,
                        "lam": lam,
                        **{k: float(v.mean()) for k, v in m.items()},
                        "sec": sec,
                    }
                    rows.append(row)
                    if log is not None:
                        log(format_table([row], header=False))
    return rows


def format_table(rows: list[dict], *, header: bool = True) -> str:
    """Markdown table of :func:`baseline_benchmark` rows."""
    lines = []
    if header:
        lines.append(
            "| size | coils | R | method | lam | PSNR dB | SSIM | fg-SSIM | NMSE | s/img |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lam = "" if r["lam"] is None else f"{r['lam']:.2g}"
        lines.append(
            f"| {r['size']} | {r['coils']} | {r['R']:g}x | {r['method']} | {lam} |"
            f" {r['psnr']:.2f} | {r['ssim']:.3f} | {r['fg_ssim']:.3f} | {r['nmse']:.4f} |"
            f" {r['sec']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="64^2 single coil, 2+2 phantoms")
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--n-val", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (timings)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = dict(n_val=a.n_val, n_test=a.n_test, seed=a.seed)
    if a.fast:
        kw.update(sizes=(64,), coils=(None,), n_val=2, n_test=2)
    rows = baseline_benchmark(log=print, **kw)
    print()
    print(format_table(rows))


if __name__ == "__main__":
    main()
