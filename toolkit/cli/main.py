"""``sciffusion`` command-line root. Sub-apps load lazily: ``--help`` imports no domain pack."""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand, TyperGroup

from .._version import __version__

# name -> (module holding a typer `app`, one-line help shown without importing it)
SUBAPPS: dict[str, tuple[str, str]] = {
    "toy": (
        "sciffusion.cli.toy",
        "2-D Gaussian-mixture toy: train, sample, evaluate (the core end-to-end job).",
    ),
    "solvers": ("sciffusion.solvers.cli", "List the samplers and benchmark them on exact oracles."),
    "mri": (
        "sciffusion.domains.mri.cli",
        "MRI: simulate, train, reconstruct, acquire, evaluate, benchmark.",
    ),
}

EXTRAS = {
    "mri": ("fastmri", "h5py", "skimage"),
    "audio": ("torchaudio",),
    "chem": ("rdkit", "ase"),
    "pde": ("xarray", "h5netcdf"),
}


def _available(module: str) -> bool:
    """Whether ``module`` exists, found on disk without importing it or its parent packages
    (only the top package, or ``sciffusion.<folder>``'s spec, is looked up)."""
    parts = module.split(".")
    head = 2 if parts[0] == "sciffusion" and len(parts) > 1 else 1
    try:
        spec = importlib.util.find_spec(".".join(parts[:head]))
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if head == len(parts):
        return True
    locations = [Path(p) for p in (spec.submodule_search_locations or [])]
    for i, part in enumerate(parts[head:], start=head):
        if i == len(parts) - 1 and any((loc / f"{part}.py").is_file() for loc in locations):
            return True
        locations = [loc / part for loc in locations if (loc / part / "__init__.py").is_file()]
        if not locations:
            return False
    return True


class LazyGroup(TyperGroup):
    """A group whose sub-apps are imported only when invoked."""

    _listing = False

    def list_commands(self, ctx) -> list[str]:
        lazy = [n for n, (mod, _) in SUBAPPS.items() if _available(mod)]
        return sorted(set(self.commands) | set(lazy))

    def get_command(self, ctx, cmd_name: str):
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in SUBAPPS:
            return None
        module, short = SUBAPPS[cmd_name]
        if self._listing:  # help listing: a stand-in that imports nothing
            return TyperCommand(name=cmd_name, help=short, callback=lambda: None)
        if not _available(module):
            return None
        app = importlib.import_module(module).app
        app._add_completion = False  # completion belongs to the root command only
        cmd = typer.main.get_command(app)
        cmd.name = cmd_name
        self.commands[cmd_name] = cmd
        return cmd

    def format_help(self, ctx, formatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=LazyGroup,
    name="sciffusion",
    help="Diffusion models for scientific data: MRI, audio, molecules, PDEs, motion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sciffusion {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """sciffusion: conditional diffusion and inverse problems for science."""


@app.command()
def info() -> None:
    """Versions, installed extras and compute devices."""
    import torch
    from rich.table import Table

    from .common import console

    table = Table(title=f"sciffusion {__version__}", show_header=False)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    from importlib.metadata import PackageNotFoundError, version

    for dist in (
        "pytorch-lightning",
        "numpy",
        "scipy",
        "fastmri",
        "torchaudio",
        "rdkit",
        "ase",
        "xarray",
    ):
        try:
            ver = version(dist)
        except PackageNotFoundError:
            ver = "-"
        table.add_row(dist, ver)
    extras = [e for e, mods in EXTRAS.items() if all(_available(m) for m in mods)]
    table.add_row("extras", ", ".join(extras) or "none")
    cuda = torch.cuda.is_available()
    devs = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    table.add_row("devices", ", ".join(["cpu", *devs]))
    table.add_row("cpu threads", str(torch.get_num_threads()))
    console().print(table)


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", help="Output folder.")] = "runs/demo",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: Annotated[str, typer.Option("--device")] = "auto",
    fast: Annotated[bool, typer.Option("--fast/--no-fast", help="Smallest setting.")] = False,
) -> None:
    """Run the main job on embedded defaults: every installed pack's demo, into one folder."""
    from pathlib import Path

    from .common import console
    from .demos import run_demos

    run_demos(Path(out), force=force, seed=seed, device=device, fast=fast, console=console())


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
