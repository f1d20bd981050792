"""Shared CLI pieces: standard options, device resolution, run folders, console output.

Every command that writes files takes ``--out`` (a folder), ``--force``, ``--config``, ``--seed``,
``--device`` and ``--fast``, saves its merged config as ``config.toml`` in ``--out``, and never
overwrites existing outputs without ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .._files import prepare_out_dir
from ..config import load_config, save_config

__all__ = [
    "ConfigOpt",
    "DeviceOpt",
    "FastOpt",
    "ForceOpt",
    "OutOpt",
    "SeedOpt",
    "console",
    "fail",
    "resolve_device",
    "start_run",
]

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML file of options; flags override it.")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda[:N]")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Output folder.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]
FastOpt = Annotated[
    bool | None, typer.Option("--fast/--no-fast", help="Smallest setting (smoke runs, CI).")
]

_console = None


def console():
    """The rich console (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=False, highlight=False)
    return _console


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no traceback) and return the exit to raise."""
    console().print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def resolve_device(device: str | None):
    """``auto`` -> ``cuda`` when available, else ``cpu``; validates explicit choices."""
    import torch

    device = device or "auto"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise fail(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise fail("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return dev


def start_run(
    cls,
    *,
    config: Path | None,
    out: Path | None,
    force: bool,
    resume: bool = False,
    section: str | None = None,
    default_out: str,
    **flags: Any,
):
    """Merge defaults < TOML < flags into ``cls``, prepare ``--out`` and save ``config.toml`` there.

    Returns ``(cfg, out_dir)``. Errors (bad keys, existing outputs) exit with a clear message.
    """
    try:
        cfg = load_config(cls, config, section=section, **flags)
        out_dir = prepare_out_dir(out or Path(default_out), force=force, resume=resume)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        raise fail(str(err)) from None
    save_config(cfg, out_dir)
    return cfg, out_dir
