"""A small image UNet for ``(B, C, H, W)`` (Ho et al. 2020; Dhariwal & Nichol 2021, ADM).

Residual blocks ``GroupNorm -> SiLU -> Conv`` with the noise (and vector-condition) embedding
applied as scale-shift after the second norm (ADM's ``use_scale_shift_norm``); self-attention at
the chosen levels and (optionally) in the middle; strided-conv downsampling, nearest-neighbour +
conv upsampling; output layers zero-initialised. Sizes that are not multiples of
``2^(len(mults) - 1)`` are zero-padded (bottom, right) and the output is cropped back, so any
``H, W`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Net, VectorCond, channel_cond, check_noise, register_net, split_cond
from .embeddings import NoiseEmbedding

__all__ = ["UNet2D"]


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    if ch % groups:
        raise ValueError(
            f"GroupNorm needs channels divisible by groups; {ch} channels, groups={groups}."
            " Choose base * mults as multiples of groups."
        )
    return nn.GroupNorm(groups, ch)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * c_out))
        self.norm2 = _norm(c_out, groups)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[..., None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the ``H W`` positions, residual, zero-initialised output."""

    def __init__(self, ch: int, heads: int, groups: int) -> None:
        super().__init__()
        if ch % heads:
            raise ValueError(f"attention needs channels divisible by heads; {ch} and {heads}")
        self.heads = heads
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.mT, k.mT, v.mT)  # (B, heads, HW, C/heads)
        return x + self.proj(h.mT.reshape(B, C, H, W))


@register_net("unet2d")
class UNet2D(Net):
    """Image UNet ``(B, channels, H, W) -> (B, channels, H, W)`` with optional conditions.

    Parameters
    ----------
    channels
        Data channels (a complex image is 2 channels: :func:`sciffusion.complex.to_channels`).
    base, mults
        Level ``i`` has ``base * mults[i]`` channels; ``len(mults) - 1`` halvings.
    num_res_blocks
        Residual blocks per level (the up path has one more, ADM style).
    attn_levels
        Levels with self-attention (``None``: the deepest level only; ``()``: none).
    mid_attention
        Self-attention between the two middle residual blocks.
    heads, groups, dropout
        Attention heads, GroupNorm groups, dropout inside residual blocks.
    emb_dim
        Embedding width (default ``4 * base``).
    cond_dim
        Vector condition ``(B, cond_dim)`` added to the embedding (via an MLP); 0 for none.
    cond_channels
        Channel-concatenated image condition ``(B, cond_channels, H, W)``, e.g. the zero-filled
        reconstruction of an MRI scan (2 channels if complex); 0 for none.
    learned_null
        Learned embedding for an all-zero (null) vector condition.
    """

    def __init__(
        self,
        channels: int,
        *,
        out_channels: int | None = None,
        base: int = 32,
        mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_levels: Sequence[int] | None = None,
        mid_attention: bool = True,
        heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        emb_dim: int | None = None,
        cond_dim: int = 0,
        cond_channels: int = 0,
        learned_null: bool = False,
        embedding: str = "sinusoidal",
    ) -> None:
        super().__init__()
        mults = [int(m) for m in mults]
        if not mults:
            raise ValueError("mults must list at least one level")
        L = len(mults)
        attn = {L - 1} if attn_levels is None else {int(a) % L for a in attn_levels}
        if attn_levels is not None and any(not -L <= int(a) < L for a in attn_levels):
            raise ValueError(f"attn_levels must lie in [-{L}, {L - 1}]; got {list(attn_levels)}")
        emb = 4 * base if emb_dim is None else int(emb_dim)
        self.channels, self.cond_channels = int(channels), int(cond_channels)
        self.out_channels = self.channels if out_channels is None else int(out_channels)
        self.factor = 2 ** (L - 1)
        self.time = NoiseEmbedding(emb, kind=embedding)
        self.vector = VectorCond(cond_dim, learned_null=learned_null)
        self.cond_embed = (
            nn.Sequential(nn.Linear(cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
            if cond_dim
            else None
        )
        self.inp = nn.Conv2d(self.channels + self.cond_channels, base, 3, padding=1)

        widths = [base * m for m in mults]
        skip_ch = [base]
        ch = base
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                layers = nn.ModuleList([_ResBlock(ch, w, emb, groups, dropout)])
                if i in attn:
                    layers.append(_Attention(w, heads, groups))
                self.down.append(layers)
                ch = w
                skip_ch.append(ch)
            if i < L - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skip_ch.append(ch)
        self.mid = nn.ModuleList(
            [
                _ResBlock(ch, ch, emb, groups, dropout),
                _Attention(ch, heads, groups) if mid_attention else nn.Identity(),
                _ResBlock(ch, ch, emb, groups, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for i in reversed(range(L)):
            w = widths[i]
            for j in range(num_res_blocks + 1):
                layers = nn.ModuleList([_ResBlock(ch + skip_ch.pop(), w, emb, groups, dropout)])
                ch = w
                if i in attn:
                    layers.append(_Attention(w, heads, groups))
                if i > 0 and j == num_res_blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(layers)
        self.out = nn.Sequential(
            _norm(ch, groups), nn.SiLU(), _zero(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )

    def forward(self, x: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"UNet2D(channels={self.channels}) expects (B, {self.channels}, H, W); got"
                f" {tuple(x.shape)}"
            )
        B, _, H, W = x.shape
        c = split_cond(cond)
        emb = self.time(check_noise(c_noise, B, "UNet2D"))
        vec = self.vector(c.vector, B, emb)
        if vec is not None:
            emb = emb + self.cond_embed(vec)
        extra = channel_cond(c.channels, x, self.cond_channels)
        h = x if extra is None else torch.cat([x, extra], dim=1)
        ph, pw = (-H) % self.factor, (-W) % self.factor
        if ph or pw:
            h = F.pad(h, (0, pw, 0, ph))
        h = self.inp(h)
        skips = [h]
        for layers in self.down:
            h = _run(layers, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = _apply(layer, h, emb)
        for layers in self.up:
            h = _run(layers, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)[..., :H, :W]


def _apply(layer: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
    return layer(h, emb) if isinstance(layer, _ResBlock) else layer(h)


def _run(layers: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
    for layer in layers:
        h = _apply(layer, h, emb)
    return h
