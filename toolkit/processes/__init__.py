"""Forward processes (contract 1) and their registry."""

from __future__ import annotations

from typing import Any

from .base import GaussianProcess, Process
from .interpolant import LinearInterpolant, StochasticInterpolant, TrigInterpolant
from .masked import Masked
from .mean_reverting import MeanReverting
from .resshift import ResShift
from .ve import VE
from .vp import VPCosine, VPDiscrete, VPLinear

__all__ = [
    "PROCESSES",
    "VE",
    "GaussianProcess",
    "LinearInterpolant",
    "Masked",
    "MeanReverting",
    "Process",
    "ResShift",
    "StochasticInterpolant",
    "TrigInterpolant",
    "VPCosine",
    "VPDiscrete",
    "VPLinear",
    "make_process",
    "process_from_config",
]

PROCESSES: dict[str, type[Process]] = {
    cls.name: cls
    for cls in (
        VPLinear,
        VPCosine,
        VPDiscrete,
        VE,
        LinearInterpolant,
        TrigInterpolant,
        MeanReverting,
        ResShift,
        Masked,
    )
}
_ALIASES = {
    "vp": "vp-linear",
    "edm": "ve",
    "flow": "linear",
    "rectified-flow": "linear",
    "gvp": "trig",
    "ir-sde": "mean-reverting",
    "absorbing": "masked",
}


def make_process(name: str, **kwargs: Any) -> Process:
    """Build a process by registry name (``sciffusion.PROCESSES``) with keyword parameters."""
    key = _ALIASES.get(name, name)
    if key not in PROCESSES:
        known = ", ".join(sorted([*PROCESSES, *_ALIASES]))
        raise ValueError(f"unknown process {name!r}; known processes: {known}")
    try:
        return PROCESSES[key](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad parameters for process {key!r}: {err}") from None


def process_from_config(config: dict[str, Any]) -> Process:
    """Inverse of ``Process.config()``."""
    if "name" not in config:
        raise ValueError(
            f"process config has no 'name' key (keys: {sorted(config)}); expected e.g."
            " {'name': 'vp-linear', 'beta_min': 0.1, 'beta_max': 20.0}"
        )
    cfg = dict(config)
    return make_process(cfg.pop("name"), **cfg)
