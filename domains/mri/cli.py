"""``sciffusion mri``: simulate | train | reconstruct | acquire | evaluate | benchmark.

Every command writes into one ``--out`` folder (with its ``config.toml``), refuses a non-empty one
without ``--force``, reads fastMRI HDF5 read-only and reports bad input in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from sciffusion.cli.common import (
    ConfigOpt,
    DeviceOpt,
    FastOpt,
    ForceOpt,
    OutOpt,
    SeedOpt,
    console,
    fail,
    resolve_device,
    start_run,
)

app = typer.Typer(
    help="MRI: simulate fastMRI files, train priors, reconstruct, acquire actively, evaluate.",
    no_args_is_help=True,
)

InputArg = Annotated[Path, typer.Argument(help="A fastMRI .h5 file or a folder of them.")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Prior folder (default: the shipped prior).")
]
NfeOpt = Annotated[int | None, typer.Option("--nfe", help="Sampling steps (network calls).")]
AccOpt = Annotated[float | None, typer.Option("--acceleration", help="Undersampling rate R.")]
CfOpt = Annotated[
    float | None, typer.Option("--center-fraction", help="Fully sampled centre fraction.")
]
MaxSlicesOpt = Annotated[
    int | None, typer.Option("--max-slices", help="Reconstruct at most this many slices per file.")
]

_BAD_INPUT = (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError)


def _run(fn, *args, **kw):
    """Call ``fn``; bad input becomes a one-line error (exit code 2)."""
    try:
        return fn(*args, **kw)
    except _BAD_INPUT as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise fail(str(msg)) from None


@dataclass
class SimulateConfig:
    """Options of ``sciffusion mri simulate``."""

    n_volumes: int = 4
    n_slices: int = 4
    size: int = 64
    coils: int = 0  # 0: single coil
    sigma: float = 0.01
    split: str = "train"  # train (targets) | test (masks, no targets)
    mask_kind: str = "random"
    acceleration: float = 4.0
    center_fraction: float = 0.08
    seed: int = 0


@app.command()
def simulate(
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = None,
    n_volumes: Annotated[int | None, typer.Option("--n-volumes")] = None,
    n_slices: Annotated[int | None, typer.Option("--n-slices")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Image size (square).")] = None,
    coils: Annotated[int | None, typer.Option("--coils", help="0 = single coil.")] = None,
    sigma: Annotated[float | None, typer.Option("--sigma", help="k-space noise std.")] = None,
    split: Annotated[str | None, typer.Option("--split", help="train | test")] = None,
) -> None:
    """Write simulated ellipse-phantom volumes as fastMRI HDF5 files into --out/data."""
    import torch
    from sciffusion.datasets.mri.fastmri_io import write_phantom_dataset

    cfg, out_dir = start_run(
        SimulateConfig,
        config=config,
        out=out,
        force=force,
        section="simulate",
        default_out="runs/mri_simulate",
        seed=seed,
        n_volumes=n_volumes,
        n_slices=n_slices,
        size=size,
        coils=coils,
        sigma=sigma,
        split=split,
    )
    paths = _run(
        write_phantom_dataset,
        out_dir / "data",
        cfg.n_volumes,
        n_slices=cfg.n_slices,
        size=cfg.size,
        generator=torch.Generator().manual_seed(cfg.seed),
        coils=cfg.coils or None,
        sigma=cfg.sigma,
        split=cfg.split,
        mask_kind=cfg.mask_kind,
        acceleration=cfg.acceleration,
        center_fraction=cfg.center_fraction,
        force=force,
    )
    console().print(f"wrote {len(paths)} files to {out_dir / 'data'}")


@app.command()
def train(
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue checkpoints/last.ckpt.")
    ] = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    fast: FastOpt = None,
    prior: Annotated[str | None, typer.Option("--prior", help="uncond | cond | irsde")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Image size.")] = None,
) -> None:
    """Train an MRI prior on simulated phantoms (the shipped recipe by default)."""
    from .prior import PriorRecipe, train_prior

    cfg, out_dir = start_run(
        PriorRecipe,
        config=config,
        out=out,
        force=force,
        resume=resume,
        section="train",
        default_out=f"runs/mri_{prior or 'uncond'}",
        seed=seed,
        fast=fast,
        prior=prior,
        steps=steps,
        batch_size=batch_size,
        size=size,
    )
    _run(cfg.check)
    dev = str(resolve_device(device))
    model = _run(train_prior, cfg, out_dir, device=dev, resume=resume, progress=True)
    info = json.loads((model / "mri.json").read_text())
    console().print(
        f"{cfg.prior} prior: {info['parameters']} parameters, {info['seconds_train']} s"
        f" ({info['seconds_per_step']} s/step) -> {model}"
    )


@app.command()
def reconstruct(
    inputs: InputArg,
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    method: Annotated[
        str | None, typer.Option("--method", help="cond | irsde | hard | prox | dps | ...")
    ] = None,
    model: ModelOpt = None,
    solver: Annotated[str | None, typer.Option("--solver", help="Registered solver.")] = None,
    nfe: NfeOpt = None,
    n_samples: Annotated[int | None, typer.Option("--n-samples")] = None,
    sigma: Annotated[
        float | None, typer.Option("--sigma", help="k-space noise std (file units).")
    ] = None,
    acceleration: AccOpt = None,
    center_fraction: CfOpt = None,
    mask_kind: Annotated[str | None, typer.Option("--mask-kind")] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Extra methods, comma separated.")
    ] = None,
    max_slices: MaxSlicesOpt = None,
) -> None:
    """Reconstruct fastMRI files: reconstructions/*.h5, figures/*.png, metrics.json."""
    from .pipeline import ReconConfig, run_reconstruction

    cfg, out_dir = start_run(
        ReconConfig,
        config=config,
        out=out,
        force=force,
        section="reconstruct",
        default_out="runs/mri_reconstruct",
        seed=seed,
        method=method,
        model=model,
        solver=solver,
        nfe=nfe,
        n_samples=n_samples,
        sigma=sigma,
        acceleration=acceleration,
        center_fraction=center_fraction,
        mask_kind=mask_kind,
        compare=compare,
    )
    dev = str(resolve_device(device))
    _run(
        run_reconstruction,
        inputs,
        out_dir,
        cfg,
        device=dev,
        max_slices=max_slices,
        log=console().print,
        force=True,
    )
    console().print(f"results in {out_dir}")


@app.command()
def acquire(
    inputs: InputArg,
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="entropy | variance | random | equispaced")
    ] = None,
    model: ModelOpt = None,
    acceleration: AccOpt = None,
    n_particles: Annotated[int | None, typer.Option("--n-particles")] = None,
    nfe: NfeOpt = None,
    max_slices: MaxSlicesOpt = None,
) -> None:
    """Choose k-space columns actively (ADS) on fully sampled files; figures + metrics.json."""
    from .pipeline import AcquireConfig, run_acquisition

    cfg, out_dir = start_run(
        AcquireConfig,
        config=config,
        out=out,
        force=force,
        section="acquire",
        default_out="runs/mri_acquire",
        seed=seed,
        strategy=strategy,
        model=model,
        acceleration=acceleration,
        n_particles=n_particles,
        nfe=nfe,
    )
    dev = str(resolve_device(device))
    _run(
        run_acquisition,
        inputs,
        out_dir,
        cfg,
        device=dev,
        max_slices=max_slices,
        log=console().print,
    )
    console().print(f"results in {out_dir}")


@app.command()
def evaluate(
    targets: Annotated[Path, typer.Argument(help="fastMRI files with targets (file or folder).")],
    recons: Annotated[Path, typer.Argument(help="Reconstruction file or folder (same names).")],
    out: OutOpt = None,
    force: ForceOpt = False,
) -> None:
    """fastMRI metrics (volume max) of reconstructions against targets; prints and saves them."""
    from rich.table import Table
    from sciffusion._files import atomic_write_text, prepare_out_dir

    from .pipeline import evaluate_files

    res = _run(evaluate_files, targets, recons)
    t = Table(title="fastMRI metrics")
    for c in ("file", "NMSE", "PSNR dB", "SSIM", "fg-SSIM"):
        t.add_column(c)
    for name, m in res.items():
        t.add_row(
            name, f"{m['nmse']:.4f}", f"{m['psnr']:.2f}", f"{m['ssim']:.4f}", f"{m['fg_ssim']:.4f}"
        )
    console().print(t)
    if out is not None:
        out_dir = _run(prepare_out_dir, out, force=force)
        atomic_write_text(out_dir / "metrics.json", json.dumps(res, indent=2) + "\n")


@app.command()
def benchmark(
    fast: FastOpt = None,
    doc: Annotated[
        Path | None, typer.Option("--doc", help="Markdown file whose mri section to rewrite.")
    ] = None,
    sizes: Annotated[str | None, typer.Option("--sizes", help="e.g. '64,128'.")] = None,
    coils: Annotated[str | None, typer.Option("--coils", help="e.g. '1,8'.")] = None,
    n_test: Annotated[int | None, typer.Option("--n-test")] = None,
) -> None:
    """Run the MRI benchmark (baselines, diffusion methods, active acquisition); prints tables."""
    from .benchmark import main

    argv = ["--fast"] if fast else []
    argv += ["--doc", str(doc) if doc is not None else ""]
    if sizes:
        argv += ["--sizes", *sizes.split(",")]
    if coils:
        argv += ["--coils", *coils.split(",")]
    if n_test:
        argv += ["--n-test", str(n_test)]
    _run(main, argv)
