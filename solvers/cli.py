"""``sciffusion solvers``: list the registered samplers."""

from __future__ import annotations

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
