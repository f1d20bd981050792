"""Diffusion Transformer with adaLN-zero (Peebles & Xie 2023, DiT) over sets, sequences and tokens.

Each block is ``x + gate * Attn(LN(x) (1 + scale) + shift)`` then the same with an MLP; the six
modulation vectors come from ``c = embedding(c_noise) + embedding(vector condition)`` through a
zero-initialised linear layer, so every block starts as the identity ("adaLN-zero", DiT Sec. 3.2).

**Masks (sets of atoms, padded sequences).** The padding mask travels in the condition:
``net(x, c_noise, {"mask": mask})`` with ``mask (B, N)`` bool, True = real element. Padded elements
are removed from attention as keys, so they never influence real elements, and their outputs are
zero. No positional encoding by default for feature inputs: the net is then permutation
equivariant over elements, as a set model should be.

**Tokens.** With ``vocab_size=V`` the input is ``(B, L)`` integers in ``[0, V]`` (``V`` is the mask
token of :class:`sciffusion.Masked`) and the output is logits ``(B, L, V)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Net, VectorCond, channel_cond, check_noise, register_net, split_cond
from .embeddings import NoiseEmbedding, sinusoidal_features

__all__ = ["Transformer"]

POSITIONAL = ("auto", "none", "sinusoidal", "learned")


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width)
        )
        self.drop = nn.Dropout(dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def attention(self, x: Tensor, keep: Tensor | None) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.proj(h.transpose(1, 2).reshape(B, N, C))

    def forward(self, x: Tensor, c: Tensor, keep: Tensor | None) -> Tensor:
        s1, sc1, g1, s2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
        x = x + g1[:, None] * self.drop(self.attention(_modulate(self.norm1(x), s1, sc1), keep))
        return x + g2[:, None] * self.drop(self.mlp(_modulate(self.norm2(x), s2, sc2)))


@register_net("transformer")
class Transformer(Net):
    """DiT over ``(B, N, features)`` (sets, sequences) or ``(B, L)`` tokens (``vocab_size``).

    Parameters
    ----------
    features
        Features per element ``F`` (e.g. 3 coordinates + atom-type channels); ``None`` in token
        mode.
    vocab_size
        Token vocabulary ``V``: input ``(B, L)`` in ``[0, V]`` (``V`` = mask), output logits
        ``(B, L, V)``.
    width, depth, heads, mlp_ratio, dropout
        Transformer size.
    cond_dim
        Vector condition ``(B, cond_dim)`` (class, property), embedded and added to the noise
        embedding; 0 for none.
    cond_features
        Per-element condition ``(B, N, cond_features)`` concatenated to the input features
        (token mode: embedded and added); 0 for none.
    positional
        ``"none"`` (permutation equivariant), ``"sinusoidal"`` (fixed, any length), ``"learned"``
        (needs ``max_len``), or ``"auto"``: sinusoidal for tokens, none for features.
    learned_null
        Learned embedding for an all-zero (null) vector condition.
    """

    def __init__(
        self,
        features: int | None = None,
        *,
        vocab_size: int | None = None,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cond_dim: int = 0,
        cond_features: int = 0,
        positional: str = "auto",
        max_len: int | None = None,
        learned_null: bool = False,
        embedding: str = "sinusoidal",
    ) -> None:
        super().__init__()
        if (features is None) == (vocab_size is None):
            raise ValueError(
                "give exactly one of features= (continuous (B, N, F) input) or vocab_size="
                f" (tokens (B, L)); got features={features}, vocab_size={vocab_size}"
            )
        if width % heads:
            raise ValueError(f"width must be divisible by heads; got width={width}, heads={heads}")
        if positional not in POSITIONAL:
            raise ValueError(f"unknown positional {positional!r}; choose one of {POSITIONAL}")
        self.tokens = vocab_size is not None
        if positional == "auto":
            positional = "sinusoidal" if self.tokens else "none"
        if positional == "learned" and not max_len:
            raise ValueError("positional='learned' needs max_len (the longest sequence)")
        self.positional, self.max_len = positional, max_len
        self.features = None if features is None else int(features)
        self.vocab_size = None if vocab_size is None else int(vocab_size)
        self.cond_features, self.width = int(cond_features), int(width)
        if self.tokens:
            self.embed = nn.Embedding(self.vocab_size + 1, width)
            self.cond_in = nn.Linear(cond_features, width) if cond_features else None
            out = self.vocab_size
        else:
            self.embed = nn.Linear(self.features + self.cond_features, width)
            self.cond_in = None
            out = self.features
        self.pos = (
            nn.Parameter(torch.randn(max_len, width) * 0.02) if positional == "learned" else None
        )
        self.time = NoiseEmbedding(width, kind=embedding)
        self.vector = VectorCond(cond_dim, learned_null=learned_null)
        self.cond_embed = (
            nn.Sequential(nn.Linear(cond_dim, width), nn.SiLU(), nn.Linear(width, width))
            if cond_dim
            else None
        )
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.head = nn.Linear(width, out)
        for layer in (self.final_ada[1], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _check(self, x: Tensor) -> None:
        if self.tokens:
            if x.ndim != 2 or x.is_floating_point():
                raise ValueError(
                    f"Transformer(vocab_size={self.vocab_size}) expects integer tokens (B, L); got"
                    f" {tuple(x.shape)} {x.dtype}"
                )
        elif x.ndim != 3 or x.shape[-1] != self.features:
            raise ValueError(
                f"Transformer(features={self.features}) expects (B, N, {self.features}); got"
                f" {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        self._check(x)
        B, N = x.shape[:2]
        c = split_cond(cond)
        emb = self.time(check_noise(c_noise, B, "Transformer"))
        vec = self.vector(c.vector, B, emb)
        if vec is not None:
            emb = emb + self.cond_embed(vec)
        extra = channel_cond(
            c.channels,
            emb.new_zeros(B, N, 1) if self.tokens else x,
            self.cond_features,
            dim=-1,
            what="per-element",
        )
        if self.tokens:
            h = self.embed(x.long())
            if extra is not None:
                h = h + self.cond_in(extra.to(h.dtype))
        else:
            h = self.embed(x if extra is None else torch.cat([x, extra], dim=-1))
        h = h + self._positions(N, h)
        keep = None
        mask = c.mask
        if mask is not None:
            if mask.shape != (B, N):
                raise ValueError(
                    f"cond['mask'] must be ({B}, {N}) bool (True = real element); got"
                    f" {tuple(mask.shape)}"
                )
            if not bool(mask.any(dim=1).all()):
                raise ValueError("every sample needs at least one real element (mask all False)")
            keep = mask[:, None, None, :]  # (B, 1, 1, N): which keys each query may attend to
        for block in self.blocks:
            h = block(h, emb, keep)
        shift, scale = self.final_ada(emb).chunk(2, dim=-1)
        out = self.head(_modulate(self.norm(h), shift, scale))
        if mask is not None:
            out = out * mask[..., None].to(out.dtype)
        return out

    def _positions(self, n: int, like: Tensor) -> Tensor | float:
        if self.positional == "none":
            return 0.0
        if self.positional == "learned":
            if n > self.max_len:
                raise ValueError(f"sequence length {n} exceeds max_len={self.max_len}")
            return self.pos[:n].to(like.dtype)
        pos = torch.arange(n, device=like.device, dtype=torch.float32)
        feats = sinusoidal_features(pos, self.width, min_period=2.0, max_period=10_000.0 * math.pi)
        return feats.to(like.dtype)
