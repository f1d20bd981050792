"""The one conversion between complex data and real network channels (docs/design.md).

Physics operators work on ``torch.complex64`` (k-space, STFT); networks see two real channels per
complex channel, real parts first: ``(B, C, *S)`` complex <-> ``(B, 2C, *S)`` real with
``x[:, :C] = Re z`` and ``x[:, C:] = Im z``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["from_channels", "to_channels"]


def to_channels(z: Tensor) -> Tensor:
    """``(B, C, *S)`` complex -> ``(B, 2C, *S)`` real (real parts, then imaginary parts)."""
    if not z.is_complex():
        raise TypeError(f"to_channels expects a complex tensor; got {z.dtype}")
    return torch.cat([z.real, z.imag], dim=1)


def from_channels(x: Tensor) -> Tensor:
    """Inverse of :func:`to_channels`: ``(B, 2C, *S)`` real -> ``(B, C, *S)`` complex."""
    if x.is_complex():
        raise TypeError("from_channels expects a real tensor with 2C channels; got a complex one")
    if x.ndim < 2 or x.shape[1] % 2:
        raise ValueError(
            f"from_channels needs an even channel count (real then imaginary parts); got shape"
            f" {tuple(x.shape)}"
        )
    c = x.shape[1] // 2
    return torch.complex(x[:, :c], x[:, c:])
