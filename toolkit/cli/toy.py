"""``sciffusion toy``: train / sample / evaluate / run on the 2-D Gaussian-mixture toy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import (
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

app = typer.Typer(help="2-D Gaussian-mixture toy: the core's end-to-end job.", no_args_is_help=True)

StepsOpt = Annotated[int | None, typer.Option("--steps", help="Training steps.")]
SolverOpt = Annotated[str | None, typer.Option("--solver", help="Registered solver name.")]
NfeOpt = Annotated[int | None, typer.Option("--nfe", help="Sampling steps.")]
NOpt = Annotated[int | None, typer.Option("--n", help="Number of samples.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Folder written by `toy train`.")]


def _cfg_from(run_dir: Path):
    from ..config import load_config
    from ..toy import ToyConfig

    f = run_dir / "config.toml"
    return load_config(ToyConfig, f if f.is_file() else None)


def _print_metrics(m: dict) -> None:
    from rich.table import Table

    t = Table(title="toy: generated vs exact samples")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("samples", str(m["n_samples"]))
    t.add_row("sliced W2 (model vs exact)", f"{m['sliced_w2']:.4f}")
    t.add_row("sliced W2 floor (exact vs exact)", f"{m['sliced_w2_floor']:.4f}")
    t.add_row("ratio to floor", f"{m['ratio_to_floor']:.2f}")
    t.add_row("mode-weight TV", f"{m['mode_weight_tv']:.4f}")
    for key in ("train_seconds", "sample_seconds"):
        if key in m:
            t.add_row(key.replace("_", " "), str(m[key]))
    console().print(t)


@app.command()
def train(
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from checkpoints/last.ckpt.")
    ] = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    fast: FastOpt = None,
    steps: StepsOpt = None,
) -> None:
    """Train the toy denoiser (Lightning); writes model/ and checkpoints/ under --out."""
    from ..toy import ToyConfig, train_toy

    cfg, out_dir = start_run(
        ToyConfig,
        config=config,
        out=out,
        force=force,
        resume=resume,
        section="toy",
        default_out="runs/toy",
        seed=seed,
        fast=fast,
        steps=steps,
    )
    dev = str(resolve_device(device))
    model = train_toy(cfg, out_dir, device=dev, resume=resume, force=force)
    console().print(f"model saved to {model}")


@app.command()
def sample(
    model: ModelOpt = Path("runs/toy"),
    out: OutOpt = None,
    force: ForceOpt = False,
    solver: SolverOpt = None,
    nfe: NfeOpt = None,
    n: NOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Sample a trained toy model; writes samples.npy (default: into the model's run folder)."""
    import dataclasses

    from ..toy import sample_toy, save_samples

    run_dir = Path(model)
    if not (run_dir / "model" / "config.json").is_file():
        raise fail(
            f"{run_dir} holds no trained model (model/config.json); run"
            f" `sciffusion toy train --out {run_dir}` first"
        )
    cfg = _cfg_from(run_dir)
    over = {
        k: v
        for k, v in {"solver": solver, "nfe": nfe, "n_samples": n, "seed": seed}.items()
        if v is not None
    }
    cfg = dataclasses.replace(cfg, **over)
    from ..solvers import get_solver

    try:
        get_solver(cfg.solver)
    except ValueError as err:
        raise fail(str(err)) from None
    target = Path(out or run_dir) / "samples.npy"
    if target.exists() and not force:
        raise fail(f"{target} exists; pass --force to overwrite it")
    samples = sample_toy(run_dir / "model", cfg, device=str(resolve_device(device)), progress=True)
    save_samples(samples, target, force=True)
    console().print(f"{len(samples)} samples ({cfg.solver}, {cfg.nfe} steps) -> {target}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="Run folder with samples.npy.")] = Path(
        "runs/toy"
    ),
    force: ForceOpt = False,
) -> None:
    """Sliced W2 vs the exact-sample floor and mode weights; writes metrics.json and toy.png."""
    from .._files import atomic_write_text
    from ..toy import evaluate_toy, load_samples, plot_toy

    try:
        samples = load_samples(run / "samples.npy")
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from None
    cfg = _cfg_from(run)
    if (run / "metrics.json").exists() and not force:
        raise fail(f"{run / 'metrics.json'} exists; pass --force to overwrite it")
    m = evaluate_toy(samples, cfg)
    atomic_write_text(run / "metrics.json", json.dumps(m, indent=2) + "\n")
    plot_toy(samples, cfg, m, run / "toy.png")
    _print_metrics(m)


@app.command()
def run(
    config: ConfigOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    fast: FastOpt = None,
    steps: StepsOpt = None,
    solver: SolverOpt = None,
    nfe: NfeOpt = None,
) -> None:
    """Train, sample and evaluate in one go."""
    from ..toy import ToyConfig, run_toy

    cfg, out_dir = start_run(
        ToyConfig,
        config=config,
        out=out,
        force=force,
        section="toy",
        default_out="runs/toy",
        seed=seed,
        fast=fast,
        steps=steps,
        solver=solver,
        nfe=nfe,
    )
    _print_metrics(run_toy(cfg, out_dir, device=str(resolve_device(device)), force=force))
    console().print(f"outputs in {out_dir} (toy.png, metrics.json, model/, config.toml)")
