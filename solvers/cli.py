"""``sciffusion solvers``: list the registered samplers; benchmark them on exact oracles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="List the samplers and benchmark them on exact oracles.", no_args_is_help=True
)


@app.callback()
def _group() -> None:
    """Samplers of sciffusion.solvers (a group, so that `sciffusion solvers list` works)."""


@app.command("list")
def list_solvers(
    kind: Annotated[
        str | None, typer.Option(help="Show only one kind: ode, sde or discrete.")
    ] = None,
) -> None:
    """Print the registry: name, kind, theoretical order, model calls for n steps, summary."""
    from rich.console import Console
    from rich.table import Table

    from . import SOLVERS, nfe_formula
    from .registry import KINDS

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; choose one of {KINDS}")
    table = Table(title="sciffusion samplers")
    for col in ("name", "kind", "order", "NFE (n steps)", "summary"):
        table.add_column(col)
    for spec in SOLVERS.values():
        if kind is None or spec.kind == kind:
            order = "-" if spec.order == 0 else f"{spec.order:g}"
            table.add_row(spec.name, spec.kind, order, nfe_formula(spec), spec.summary)
    Console().print(table)


@app.command("benchmark")
def benchmark(
    fast: Annotated[
        bool, typer.Option("--fast", help="CI setting: fewer paths, problems and NFEs (< 1 min).")
    ] = False,
    write: Annotated[
        Path | None,
        typer.Option(
            help="Markdown file whose solvers section (<!-- solvers:start/end -->) is rewritten,"
            " e.g. docs/benchmarks.md; created with a title if missing."
        ),
    ] = None,
) -> None:
    """Our solvers vs diffusers' schedulers on the exact Gaussian-mixture oracle: endpoint error,
    mode TV, sliced W2, parity, orders and per-step overhead (sciffusion.solvers.bench)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .bench import benchmark as run_benchmark
    from .bench import has_diffusers

    if not has_diffusers():
        typer.echo("diffusers is not installed (pip install 'sciffusion[bench]'): ours only.")
    command = "sciffusion solvers benchmark" + (" --fast" if fast else "")
    run_benchmark(fast=fast, write=write, command=command)
