"""The MRI benchmark: classical baselines, every diffusion method, active acquisition.

Held-out simulated ellipse phantoms (note 03 §4, B2-B4), complex k-space noise ``sigma``, random
fastMRI masks (centre fraction 0.08 at 4x, 0.04 at 8x; one mask per phantom):

* **reconstruction** (:func:`mri_benchmark`): zero-filled, CG-SENSE (multi coil, true and
  ACS-estimated maps), TV-ADMM with ``lam`` chosen on *validation* phantoms
  (:func:`~.baselines.oracle_lambda`), then every diffusion method of :mod:`.recon` with the
  shipped priors (or the ones passed in), posterior mean of ``n_samples`` samples;
* **acquisition** (:func:`acquisition_benchmark`): ADS (entropy, variance) against random and
  equispaced columns at the same budget, all reconstructed by the same particle sampler.

Metrics are fastMRI's, each image its own volume (data range = its max), plus foreground SSIM;
sampling methods add the calibration of their std (coverage of ``|err| <= 2 std`` and the
Spearman correlation of std with ``|err|`` on the foreground). Seconds are wall time per slice.

``python benchmarks/mri.py [--fast]`` (or ``sciffusion mri benchmark``) runs both and writes the
tables; the numbers in ``docs/benchmarks.md`` come from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .baselines import cg_sense, oracle_lambda, rss_zero_filled, tv_admm, zero_filled
from .coils import estimate_maps_lowres
from .masks import make_mask
from .metrics import calibration, foreground_mask, per_image_metrics
from .physics import SenseMRI, SinglecoilMRI

__all__ = [
    "DEFAULT_VARIANTS",
    "FAST_VARIANTS",
    "Variant",
    "acquisition_benchmark",
    "baseline_benchmark",
    "format_table",
    "mri_benchmark",
    "write_section",
]

LAMS = tuple(float(v) for v in np.geomspace(3e-4, 3e-2, 9))
METRICS = ("nmse", "psnr", "ssim", "fg_ssim")


@dataclass(frozen=True)
class Variant:
    """One diffusion row: a :func:`~.recon.reconstruct` method with its solver, steps, knobs."""

    label: str
    method: str
    solver: str | None = None
    nfe: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    n_samples: int | None = None


DEFAULT_VARIANTS = (
    Variant("uncond + hard DC (DDPM 50)", "hard"),
    Variant("uncond + prox DC (DDPM 50)", "prox"),
    Variant("uncond + DPS (DDPM 50)", "dps", options={"zeta": 1.0}),
    Variant("uncond + PiGDM (DDIM 50)", "pigdm"),
    Variant("uncond + RED-Diff (50)", "red_diff"),
    Variant("uncond + twisted SMC (8 particles, 25)", "smc", nfe=25, options={"n_particles": 8}),
    Variant("cond + prox DC (DDPM 20)", "cond"),
    Variant("IR-SDE, MR Sampler (10 NFE)", "irsde", nfe=10),
    Variant("IR-SDE, MR Sampler (20 NFE)", "irsde", nfe=20),
    Variant("IR-SDE, Euler-Maruyama (100)", "irsde", solver="ir_sde_em", nfe=100),
)
FAST_VARIANTS = (
    Variant("uncond + prox DC (DDPM 10)", "prox", nfe=10, n_samples=2),
    Variant("cond + prox DC (DDPM 10)", "cond", nfe=10, n_samples=2),
    Variant("IR-SDE, MR Sampler (10 NFE)", "irsde", nfe=10, n_samples=2),
)


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


def _score(target: Tensor, rec: Tensor, std: Tensor | None = None) -> dict[str, float]:
    mag = rec.abs() if rec.is_complex() else rec
    m = per_image_metrics(target, mag, which=METRICS)
    out = {k: float(v.mean()) for k, v in m.items()}
    if std is not None and bool((std > 0).any()):
        fg = foreground_mask(target)
        cal = calibration(mag, std, target, mask=fg)
        out.update(coverage=cal.coverage, spearman=cal.spearman)
    return out


def _baselines(size, nc, acc, cf, n_val, n_test, sigma, lams, seed):
    """Classical rows of one setting and the held-out problem they were scored on."""
    val = _setting(size, nc, acc, cf, n_val, sigma, seed)
    test = _setting(size, nc, acc, cf, n_test, sigma, seed + 1000)
    pb, op, y, masks = test
    methods: list[tuple[str, float | None, Callable[[], Tensor]]] = []
    if nc is None:
        methods.append(("zero-filled", None, lambda: zero_filled(op, y)))
    else:
        methods.append(("zero-filled RSS", None, lambda: rss_zero_filled(y)))
        methods.append(("CG-SENSE (10 it)", None, lambda: cg_sense(op, y, max_iter=10)))
        op_est = SenseMRI(masks, estimate_maps_lowres(y, mask=masks))
        methods.append(("CG-SENSE est. maps", None, lambda: cg_sense(op_est, y, max_iter=10)))
    vpb, vop, vy, _ = val
    search = oracle_lambda(lambda lam: tv_admm(vop, vy, lam=lam), lams, vpb.target)
    name = "TV-ADMM" if nc is None else "TV-SENSE"
    methods.append((name, search.best, lambda: tv_admm(op, y, lam=search.best)))
    rows = []
    for method, lam, fn in methods:
        t0 = time.perf_counter()
        rec = fn()
        sec = (time.perf_counter() - t0) / pb.target.shape[0]
        rows.append({"method": method, "lam": lam, **_score(pb.target, rec), "sec": sec, "nfe": 0})
    return rows, test


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
    """The classical rows only (zero-filled, CG-SENSE, TV); see :func:`mri_benchmark`."""
    return mri_benchmark(
        sizes=sizes,
        accelerations=accelerations,
        coils=coils,
        n_val=n_val,
        n_test=n_test,
        sigma=sigma,
        lams=lams,
        seed=seed,
        variants=(),
        log=log,
    )


def mri_benchmark(
    *,
    sizes: Sequence[int] = (64, 128),
    accelerations: Sequence[tuple[float, float]] = ((4, 0.08), (8, 0.04)),
    coils: Sequence[int | None] = (None, 8),
    n_val: int = 4,
    n_test: int = 8,
    sigma: float = 0.01,
    lams: Sequence[float] = LAMS,
    seed: int = 0,
    variants: Sequence[Variant] = DEFAULT_VARIANTS,
    priors: dict[str, Any] | None = None,
    n_samples: int = 4,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Reconstruction benchmark; one row per (size, coils, acceleration, method).

    Validation phantoms use seed ``seed``, held-out ones ``seed + 1000`` (different phantoms,
    noise and masks; the shipped priors were trained on the stream of seed 0 with fresh
    generators, never on these). Each row: ``size, coils, R, method, lam, nmse, psnr, ssim,
    fg_ssim`` (means over the held-out phantoms), ``sec`` per slice, ``nfe`` and, for sampling
    methods, ``coverage`` and ``spearman``.
    """
    from .prior import load_prior
    from .recon import reconstruct

    loaded: dict[str, Any] = dict(priors or {})
    rows = []
    for size in sizes:
        for nc in coils:
            for acc, cf in accelerations:
                head = {"size": size, "coils": 1 if nc is None else nc, "R": acc}
                base, (pb, _, _, masks) = _baselines(
                    size, nc, acc, cf, n_val, n_test, sigma, lams, seed
                )
                for r in base:
                    rows.append({**head, **r})
                    if log is not None:
                        log(format_table([rows[-1]], header=False))
                for v in variants:
                    from .recon import METHODS

                    if nc is not None and v.method == "hard":
                        continue  # noisy multi-coil: hard DC is CG-SENSE (reconstruct refuses it)
                    kind = METHODS[v.method].prior
                    if kind is not None and kind not in loaded:
                        loaded[kind] = load_prior(kind)
                    g = torch.Generator().manual_seed(seed + 7)
                    rec = reconstruct(
                        pb.kspace,
                        masks,
                        method=v.method,
                        prior=loaded.get(kind),
                        maps=pb.maps,
                        sigma=sigma,
                        solver=v.solver,
                        nfe=v.nfe,
                        n_samples=v.n_samples or n_samples,
                        generator=g,
                        options=dict(v.options),
                    )
                    row = {
                        **head,
                        "method": v.label,
                        "lam": None,
                        **_score(pb.target, rec.mean, rec.std),
                        "sec": rec.seconds,
                        "nfe": rec.nfe,
                    }
                    rows.append(row)
                    if log is not None:
                        log(format_table([row], header=False))
    return rows


def acquisition_benchmark(
    *,
    size: int = 64,
    acceleration: float = 8,
    center_fraction: float = 0.04,
    n_test: int = 4,
    sigma: float = 0.01,
    strategies: Sequence[str] = ("entropy", "variance", "random", "equispaced"),
    n_particles: int = 16,
    nfe: int = 50,
    seed: int = 0,
    prior: Any = None,
    options: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """ADS vs fixed columns at an equal budget ``round(W / R)`` (calibration block included).

    Every strategy reconstructs with the same DPS-guided particle sampler (``n_particles``,
    ``nfe`` DDIM steps, final hard DC) on the same held-out phantoms (seed ``seed + 2000``).
    """
    from sciffusion.datasets.mri.phantoms import simulate_phantoms

    from .acquire import acquire
    from .prior import load_prior

    pr = prior if prior is not None else load_prior("uncond")
    pb = simulate_phantoms(
        n_test, size, generator=torch.Generator().manual_seed(seed + 2000), sigma=sigma
    )
    budget = round(size / acceleration)
    rows = []
    for st in strategies:
        g = torch.Generator().manual_seed(seed + 11)
        a = acquire(
            pb.kspace,
            budget=budget,
            strategy=st,
            prior=pr,
            center_fraction=center_fraction,
            n_particles=n_particles,
            nfe=nfe,
            generator=g,
            **dict(options or {}),
        )
        row = {
            "size": size,
            "coils": 1,
            "R": acceleration,
            "method": f"{st} ({budget} columns)",
            "lam": None,
            **_score(pb.target, a.mean, a.std),
            "sec": a.seconds,
            "nfe": nfe,
        }
        rows.append(row)
        if log is not None:
            log(format_table([row], header=False))
    return rows


def format_table(rows: list[dict], *, header: bool = True) -> str:
    """Markdown table of benchmark rows."""
    lines = []
    if header:
        lines.append(
            "| size | coils | R | method | PSNR dB | SSIM | fg-SSIM | NMSE | s/slice | NFE |"
            " coverage 2σ | Spearman |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lam = "" if r.get("lam") is None else f" (λ={r['lam']:.2g})"
        cov = f"{r['coverage']:.2f}" if "coverage" in r else ""
        rho = f"{r['spearman']:.2f}" if "spearman" in r else ""
        lines.append(
            f"| {r['size']} | {r['coils']} | {r['R']:g}x | {r['method']}{lam} |"
            f" {r['psnr']:.2f} | {r['ssim']:.3f} | {r['fg_ssim']:.3f} | {r['nmse']:.4f} |"
            f" {r['sec']:.3f} | {r.get('nfe', 0)} | {cov} | {rho} |"
        )
    return "\n".join(lines)


def write_section(path: str | Path, text: str, *, name: str = "mri") -> Path:
    """Replace the ``name`` section of the report at ``path`` (see :mod:`sciffusion._report`)."""
    from sciffusion._report import write_section as _write

    return _write(name, text, path)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """``python benchmarks/mri.py [--fast] [--doc PATH]``: the full MRI benchmark.

    Prints the tables and rewrites the ``mri`` section of ``--doc`` (default
    ``docs/benchmarks.md``; ``--doc ''`` skips it). ``--fast`` is CI's smallest setting (64x64
    single coil, 2 held-out phantoms, three diffusion rows at 10 NFE, a short ADS comparison).
    """
    import argparse
    import platform

    p = argparse.ArgumentParser(description="MRI benchmark on simulated phantoms")
    p.add_argument("--fast", action="store_true", help="CI's smallest setting (about a minute)")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown report ('' to skip)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--coils", type=int, nargs="+", default=[1, 8], help="1 = single coil")
    p.add_argument("--n-test", type=int, default=8)
    p.add_argument("--n-val", type=int, default=4)
    p.add_argument("--n-samples", type=int, default=4)
    p.add_argument("--methods", nargs="*", default=None, help="diffusion rows (labels' methods)")
    p.add_argument("--baselines-only", action="store_true")
    p.add_argument("--no-acquire", action="store_true")
    p.add_argument("--acquire-n", type=int, default=4, help="held-out slices for ADS")
    p.add_argument("--particles", type=int, default=8, help="ADS particles per slice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (timings)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    variants: Sequence[Variant] = FAST_VARIANTS if a.fast else DEFAULT_VARIANTS
    if a.methods is not None:
        variants = [v for v in variants if v.method in set(a.methods)]
    if a.baselines_only:
        variants = ()
    kw: dict[str, Any] = dict(
        sizes=tuple(a.sizes),
        coils=tuple(None if c == 1 else c for c in a.coils),
        n_val=a.n_val,
        n_test=a.n_test,
        n_samples=a.n_samples,
        seed=a.seed,
        variants=variants,
    )
    if a.fast:
        kw.update(sizes=(64,), coils=(None,), n_val=2, n_test=2, n_samples=2)
    print(format_table([]))
    t0 = time.perf_counter()
    rows = mri_benchmark(log=print, **kw)
    acq: list[dict] = []
    if not a.no_acquire and not a.baselines_only:
        akw: dict[str, Any] = dict(n_test=a.acquire_n, seed=a.seed, n_particles=a.particles)
        if a.fast:
            akw.update(
                n_test=1, n_particles=4, nfe=20, strategies=("entropy", "equispaced", "random")
            )
        print()
        print(format_table([]))
        acq = acquisition_benchmark(log=print, **akw)
    total = time.perf_counter() - t0
    import sys

    args = " ".join(sys.argv[1:] if argv is None else argv)
    big = " (applied fully convolutionally at 128x128)" if 128 in kw["sizes"] else ""
    text = "\n".join(
        [
            "## MRI reconstruction (simulated ellipse phantoms)",
            "",
            f"`python benchmarks/mri.py {args}`".replace(" `", "`")
            + f" ({platform.machine()}, torch threads {a.threads}, {total:.0f} s in all)."
            " Held-out phantoms, complex k-space noise sigma 0.01 (image max about 1), random"
            " fastMRI masks (centre fraction 0.08 at 4x, 0.04 at 8x); TV's lambda chosen on"
            " separate validation phantoms; diffusion rows are posterior means of the shipped"
            f" 64x64 priors{big}. PSNR/SSIM/NMSE follow"
            " fastMRI with each image its own volume; seconds are wall time per slice on a shared"
            " CPU (noisy).",
            "",
            format_table(rows),
        ]
    )
    if acq:
        text += (
            "\n\n### Active acquisition (ADS) vs fixed masks at equal budget\n\n"
            + format_table(acq)
        )
    print()
    print(text)
    if a.doc:
        write_section(a.doc, text)
        print(f"\nwrote the mri section of {a.doc}")
    return rows + acq


if __name__ == "__main__":
    main()
