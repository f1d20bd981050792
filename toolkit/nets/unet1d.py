"""Temporal UNet with FiLM conditioning for ``(B, C, T)`` (Chi et al. 2023, Diffusion Policy).

Our own implementation of the ``ConditionalUnet1D`` design: residual blocks of two
``Conv1d -> GroupNorm -> Mish`` layers, the first one FiLM-modulated,
``h <- scale(c) h + bias(c)`` (Perez et al. 2018), with ``c = [embedding(c_noise), global
condition]``; strided-conv downsampling, transposed-conv upsampling and a skip connection at every
resolution. Lengths that are not a multiple of ``2^(len(down_dims) - 1)`` are zero-padded on the
right and the output is cropped back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import Net, VectorCond, channel_cond, check_noise, register_net, split_cond
from .embeddings import NoiseEmbedding

__all__ = ["UNet1D"]


def _check_groups(ch: int, groups: int) -> None:
    if ch % groups:
        raise ValueError(
            f"GroupNorm needs channels divisible by n_groups; {ch} channels, n_groups={groups}."
            " Choose down_dims that are multiples of n_groups."
        )


class _ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int) -> None:
        _check_groups(c_out, groups)
        super().__init__(
            nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2),
            nn.GroupNorm(groups, c_out),
            nn.Mish(),
        )


class _ResBlock(nn.Module):
    """Two conv blocks; FiLM (scale and bias, or bias only) after the first (Chi et al. 2023)."""

    def __init__(
        self, c_in: int, c_out: int, cond: int, kernel: int, groups: int, scale: bool
    ) -> None:
        super().__init__()
        self.block1 = _ConvBlock(c_in, c_out, kernel, groups)
        self.block2 = _ConvBlock(c_out, c_out, kernel, groups)
        self.scale = scale
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond, 2 * c_out if scale else c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.block1(x)
        f = self.film(c)[..., None]
        if self.scale:
            s, b = f.chunk(2, dim=1)
            h = s * h + b
        else:
            h = h + f
        return self.block2(h) + self.skip(x)


@register_net("unet1d")
class UNet1D(Net):
    """FiLM-conditioned temporal UNet: ``(B, channels, T) -> (B, channels, T)``.

    Parameters
    ----------
    channels
        Data channels ``C`` (e.g. action dimensions, for a chunk laid out as ``(B, C, T)``).
    down_dims
        Channels per level; ``len(down_dims) - 1`` halvings of ``T`` (Diffusion Policy uses
        ``[256, 512, 1024]``; the small default suits CPU tests).
    kernel_size, n_groups
        Conv kernel (odd) and GroupNorm groups (must divide every entry of ``down_dims``).
    emb_dim
        Width of the noise embedding.
    cond_dim
        Global (vector) condition ``(B, cond_dim)``, e.g. flattened observations; concatenated to
        the noise embedding and fed to every FiLM layer. 0 for none.
    cond_channels
        Channel-concatenated condition ``(B, cond_channels, T)``; 0 for none.
    film_scale
        FiLM with scale and bias (Diffusion Policy's ``cond_predict_scale``) or bias only.
    learned_null
        Learned embedding for an all-zero (null) vector condition.
    """

    def __init__(
        self,
        channels: int,
        *,
        out_channels: int | None = None,
        down_dims: Sequence[int] = (32, 64, 128),
        kernel_size: int = 5,
        n_groups: int = 8,
        emb_dim: int = 64,
        cond_dim: int = 0,
        cond_channels: int = 0,
        film_scale: bool = True,
        learned_null: bool = False,
        embedding: str = "sinusoidal",
    ) -> None:
        super().__init__()
        dims = [int(d) for d in down_dims]
        if not dims:
            raise ValueError("down_dims must list at least one level")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-length convs); got {kernel_size}")
        self.channels, self.cond_channels = int(channels), int(cond_channels)
        self.out_channels = self.channels if out_channels is None else int(out_channels)
        self.factor = 2 ** (len(dims) - 1)
        self.time = nn.Sequential(
            NoiseEmbedding(emb_dim, kind=embedding), nn.Mish(), nn.Linear(emb_dim, emb_dim)
        )
        self.vector = VectorCond(cond_dim, learned_null=learned_null)
        cdim = emb_dim + int(cond_dim)
        blk = dict(cond=cdim, kernel=kernel_size, groups=n_groups, scale=film_scale)
        ins = [self.channels + self.cond_channels, *dims]
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(itertools.pairwise(ins)):
            deepest = i == len(dims) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        _ResBlock(a, b, **blk),
                        _ResBlock(b, b, **blk),
                        nn.Identity() if deepest else nn.Conv1d(b, b, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = dims[-1]
        self.mid = nn.ModuleList([_ResBlock(mid, mid, **blk), _ResBlock(mid, mid, **blk)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(dims) - 1)):
            a, b = dims[i], dims[i + 1]  # from level i + 1 (b channels) up to level i (a)
            self.up.append(
                nn.ModuleList(
                    [
                        nn.ConvTranspose1d(b, b, 4, stride=2, padding=1),
                        _ResBlock(a + b, a, **blk),
                        _ResBlock(a, a, **blk),
                    ]
                )
            )
        self.final = nn.Sequential(
            _ConvBlock(dims[0], dims[0], kernel_size, n_groups),
            nn.Conv1d(dims[0], self.out_channels, 1),
        )

    def forward(self, x: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"UNet1D(channels={self.channels}) expects (B, {self.channels}, T); got"
                f" {tuple(x.shape)}"
            )
        B, _, T = x.shape
        c = split_cond(cond)
        emb = self.time(check_noise(c_noise, B, "UNet1D"))
        vec = self.vector(c.vector, B, emb)
        g = emb if vec is None else torch.cat([emb, vec], dim=1)
        extra = channel_cond(c.channels, x, self.cond_channels)
        h = x if extra is None else torch.cat([x, extra], dim=1)
        pad = (-T) % self.factor
        if pad:
            h = nn.functional.pad(h, (0, pad))
        skips = []
        for res1, res2, down in self.down:
            h = res2(res1(h, g), g)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, g)
        skips.pop()  # the deepest level is the middle's input
        for up, res1, res2 in self.up:
            h = torch.cat([up(h), skips.pop()], dim=1)
            h = res2(res1(h, g), g)
        return self.final(h)[..., :T]
