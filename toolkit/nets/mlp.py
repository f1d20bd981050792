"""Residual MLP for flat data ``(B, D)``: toy problems, low-dimensional states, small fixed sets."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import Net, VectorCond, check_noise, register_net, split_cond
from .embeddings import NoiseEmbedding

__all__ = ["MLP"]

COND_MODES = ("film", "concat")


class _Block(nn.Module):
    """``h + W2 dropout(SiLU(W1 (LN(h) (1 + scale) + shift)))`` with FiLM from the embedding."""

    def __init__(self, hidden: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * hidden))
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb).chunk(2, dim=-1)
        a = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(self.drop(self.act(self.fc1(a))))


@register_net("mlp")
class MLP(Net):
    """Residual MLP ``net(x, c_noise, cond) -> out`` for ``(B, *event)``, ``prod(event) = dim``.

    The input is flattened to ``(B, dim)`` and the output reshaped back.

    Parameters
    ----------
    dim
        Number of entries per sample.
    hidden, depth
        Width and number of residual blocks.
    emb_dim
        Width of the noise (and condition) embedding.
    cond_dim
        Size of the vector condition ``(B, cond_dim)``; 0 for an unconditional net. A missing
        condition is zeros (the null condition of classifier-free guidance).
    cond_mode
        ``"film"``: the condition is embedded and added to the noise embedding, which modulates
        every block; ``"concat"``: it is concatenated to the input.
    learned_null
        Replace an all-zero condition by a learned vector (see ``VectorCond``).
    embedding
        ``"sinusoidal"`` or ``"fourier"`` features of ``c_noise``.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        depth: int = 3,
        emb_dim: int = 128,
        cond_dim: int = 0,
        cond_mode: str = "film",
        learned_null: bool = False,
        dropout: float = 0.0,
        embedding: str = "sinusoidal",
    ) -> None:
        super().__init__()
        if cond_mode not in COND_MODES:
            raise ValueError(f"unknown cond_mode {cond_mode!r}; choose one of {COND_MODES}")
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"need dim, hidden, depth >= 1; got {dim}, {hidden}, {depth}")
        self.dim, self.cond_mode = int(dim), cond_mode
        self.time = NoiseEmbedding(emb_dim, kind=embedding)
        self.vector = VectorCond(cond_dim, learned_null=learned_null)
        film = cond_mode == "film" and cond_dim > 0
        self.cond_embed = (
            nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if film
            else None
        )
        n_in = dim + (cond_dim if cond_mode == "concat" else 0)
        self.inp = nn.Linear(n_in, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, emb_dim, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        B = x.shape[0]
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(
                f"MLP(dim={self.dim}) expects (B, *event) with {self.dim} entries per sample; got"
                f" shape {tuple(x.shape)}"
            )
        c = split_cond(cond)
        if c.channels is not None:
            raise ValueError(
                "MLP takes a vector condition (B, C) only; flatten channel conditions into it"
            )
        emb = self.time(check_noise(c_noise, B, "MLP"))
        h_in = x.reshape(B, self.dim)
        vec = self.vector(c.vector, B, emb)
        if vec is not None and self.cond_embed is not None:
            emb = emb + self.cond_embed(vec)
        elif vec is not None:
            h_in = torch.cat([h_in, vec], dim=1)
        h = self.inp(h_in)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h).reshape(x.shape)
