"""Classifier-free guidance as a denoiser transform (Ho & Salimans 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._tensor import as_time

__all__ = ["cfg"]


class _CFG:
    def __init__(self, denoiser, scale: float, null_cond) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self.scale = float(scale)
        self.null_cond = null_cond

    def __call__(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        if cond is None:
            raise ValueError("classifier-free guidance needs a condition; got cond=None")
        if not isinstance(cond, Tensor):
            raise TypeError("cfg() guides tensor conditions; wrap structured conditions yourself")
        t = as_time(t, x)
        null = torch.zeros_like(cond) if self.null_cond is None else self.null_cond.expand_as(cond)
        both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null]))
        d_cond, d_null = both.chunk(2)
        return d_null + self.scale * (d_cond - d_null)


def cfg(denoiser, scale: float, *, null_cond: Tensor | None = None):
    """Guided denoiser ``D_w = D(x, t, null) + w (D(x, t, c) - D(x, t, null))``.

    ``w = 1`` is the conditional model, ``w = 0`` the unconditional one. The null condition is
    what conditioning dropout fed the network during training: zeros by default
    (:class:`sciffusion.DiffusionModule` drops conditions to zeros). Both branches run as one batch.
    """
    return _CFG(denoiser, scale, null_cond)
