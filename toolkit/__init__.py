"""sciffusion: diffusion models for scientific and non-image data.

``import sciffusion`` is cheap (no torch until a name is used): names below load on first access.

Core contracts (docs/design.md): processes, ``Denoiser`` (``D(x, t, cond) -> x0_hat``), pure
conversions, exact oracles, guidance transforms; solvers live in :mod:`sciffusion.solvers`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    # processes
    "PROCESSES": "processes",
    "Process": "processes",
    "GaussianProcess": "processes",
    "VPLinear": "processes",
    "VPCosine": "processes",
    "VPDiscrete": "processes",
    "VE": "processes",
    "LinearInterpolant": "processes",
    "TrigInterpolant": "processes",
    "StochasticInterpolant": "processes",
    "MeanReverting": "processes",
    "ResShift": "processes",
    "Masked": "processes",
    "make_process": "processes",
    "process_from_config": "processes",
    # denoisers and conversions
    "Denoiser": "denoiser",
    "MaskedDenoiser": "denoiser",
    "DenoiserLike": "denoiser",
    "PREDICTIONS": "conversions",
    "to_x0": "conversions",
    "from_x0": "conversions",
    # oracles
    "GaussianOracle": "oracles",
    "GaussianMixtureOracle": "oracles",
    "toy_gmm": "oracles",
    "linear_gaussian_posterior": "oracles",
    "gmm_linear_posterior": "oracles",
    "reference_ode": "oracles",
    "DiscreteOracle": "oracles",
    "toy_discrete": "oracles",
    # guidance
    "cfg": "guidance",
    # training and I/O
    "DiffusionModule": "training",
    "fit": "training",
    "NETS": "nets",
    "build_net": "nets",
    "register_net": "nets",
    "save_pretrained": "io",
    "from_pretrained": "io",
    # helpers
    "append_dims": "_tensor",
    "sliced_wasserstein": "metrics",
}

#: subpackages reachable as attributes (``sf.inverse.pigdm``), imported on first access
_SUBMODULES = ("inverse", "solvers", "training", "nets", "oracles", "processes", "guidance")

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sciffusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if TYPE_CHECKING:  # pragma: no cover
    from ._tensor import append_dims
    from .conversions import PREDICTIONS, from_x0, to_x0
    from .denoiser import Denoiser, DenoiserLike, MaskedDenoiser
    from .guidance import cfg
    from .io import from_pretrained, save_pretrained
    from .metrics import sliced_wasserstein
    from .nets import NETS, build_net, register_net
    from .oracles import (
        DiscreteOracle,
        GaussianMixtureOracle,
        GaussianOracle,
        gmm_linear_posterior,
        linear_gaussian_posterior,
        reference_ode,
        toy_discrete,
        toy_gmm,
    )
    from .processes import (
        PROCESSES,
        VE,
        GaussianProcess,
        LinearInterpolant,
        Masked,
        MeanReverting,
        Process,
        ResShift,
        StochasticInterpolant,
        TrigInterpolant,
        VPCosine,
        VPDiscrete,
        VPLinear,
        make_process,
        process_from_config,
    )
    from .training import DiffusionModule, fit
