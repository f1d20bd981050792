"""Tensor helpers shared by the whole core: time broadcasting and input checks."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["append_dims", "as_time", "bcast", "check_finite", "get_mu"]


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims to ``v`` until it has ``ndim`` dims (k-diffusion style)."""
    missing = ndim - v.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast a tensor of rank {v.ndim} to rank {ndim}")
    return v.reshape(*v.shape, *([1] * missing))


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """Broadcast a per-sample ``v`` of shape ``(B,)`` (or a scalar) against ``x (B, *event)``."""
    if v.ndim == 0:
        return v.to(x.dtype if x.is_floating_point() else v.dtype)
    return append_dims(v, x.ndim)


def as_time(t: float | Tensor, x: Tensor, *, dtype: torch.dtype | None = None) -> Tensor:
    """Return time as a ``(B,)`` tensor on ``x``'s device; scalars are expanded to the batch."""
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t), dtype=dtype, device=x.device)
    t = t.to(device=x.device, dtype=dtype)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"time must be a scalar or a (B,) tensor with B={x.shape[0]}; got shape"
            f" {tuple(t.shape)}. Pass one time per sample, e.g. torch.full((B,), t)."
        )
    return t


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise a clear error if ``x`` holds NaN or inf (user input is never ``assert``-ed)."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ValueError(
                f"{name} contains {n} non-finite value(s) (NaN or inf) out of {x.numel()}."
                " Clean or mask the input first (e.g. torch.nan_to_num) and check its scaling."
            )
    return x


def get_mu(cond: object) -> Tensor | None:
    """The mean ``mu`` carried by a condition: the tensor itself, or ``cond['mu']``."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond
    if isinstance(cond, Mapping) and "mu" in cond:
        return cond["mu"]
    return None


def log_sigmoid_safe(x: Tensor) -> Tensor:
    """``log(sigmoid(x))`` that is exact at both ends, including ``x = +-inf``."""
    return torch.nn.functional.logsigmoid(x)


LOG2 = math.log(2.0)
