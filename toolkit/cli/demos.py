"""``sciffusion demo``: each installed pack's demo, run on embedded defaults into one folder.

A demo is ``fn(out_dir, *, seed, device, fast, console) -> dict`` of headline numbers; packs add
theirs to :data:`DEMOS` (``module:function``), which runs them in order.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from .._files import atomic_write_text, prepare_out_dir
from .common import fail

DEMOS: list[tuple[str, str]] = [
    ("toy", "sciffusion.cli.demos:toy_demo"),
    ("mri", "sciffusion.domains.mri.demo:mri_demo"),
]


def toy_demo(out_dir: Path, *, seed: int, device: str, fast: bool, console) -> dict:
    from ..config import save_config
    from ..toy import ToyConfig, run_toy
    from .toy import _print_metrics

    cfg = ToyConfig(seed=seed, fast=fast)
    save_config(cfg, out_dir)
    m = run_toy(cfg, out_dir, device=device, force=True)  # run_demos checked --force
    _print_metrics(m)
    return {k: m[k] for k in ("sliced_w2", "sliced_w2_floor", "ratio_to_floor", "mode_weight_tv")}


def _load(target: str):
    """The demo function, or None when its pack is not installed (other import errors surface)."""
    module, fn = target.split(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            return None
        raise


def run_demos(out: Path, *, force: bool, seed: int, device: str, fast: bool, console) -> dict:
    from .common import resolve_device

    try:
        root = prepare_out_dir(out, force=force)
    except FileExistsError as err:
        raise fail(str(err)) from None
    dev = str(resolve_device(device))
    summary: dict = {}
    for name, target in DEMOS:
        fn = _load(target)
        if fn is None:
            continue
        console.rule(f"demo: {name}")
        t0 = time.perf_counter()
        sub = root / name
        sub.mkdir(parents=True, exist_ok=True)
        summary[name] = {
            **fn(sub, seed=seed, device=dev, fast=fast, console=console),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2) + "\n")
    console.print(f"demo outputs in {root} (summary.json and one folder per pack)")
    return summary
