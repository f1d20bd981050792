"""Noise-level embeddings of ``c_noise = process.noise_cond(t) = -log_snr / 8`` (clamped to +-20).

Typical values run from about -1.5 (clean, log-SNR ~ 12) to 10 (pure noise of a flow or a
cosine schedule); the clamp is +-20. Features are ``cos(2 pi c / P_k)`` and ``sin(2 pi c / P_k)``
with periods ``P_k`` spaced geometrically from ``min_period = 0.05`` (resolves steps of ~0.01 in
``c``, i.e. 0.1 in log-SNR) to ``max_period = 160`` (half a turn across the whole +-20 range, so
no two levels alias). ``kind="fourier"`` draws the frequencies at random instead (Gaussian Fourier
features, Tancik et al. 2020), from a seeded generator so that a config rebuilds them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["NoiseEmbedding", "sinusoidal_features"]

EMBEDDINGS = ("sinusoidal", "fourier")


def sinusoidal_features(
    c: Tensor, dim: int, *, min_period: float = 0.05, max_period: float = 160.0
) -> Tensor:
    """``[cos(2 pi c / P_k), sin(2 pi c / P_k)]`` for ``dim // 2`` geometric periods; ``(B, dim)``.

    Also used as fixed positional encodings of sequence positions (with other periods).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal feature dim must be even and >= 2; got {dim}")
    half = dim // 2
    k = torch.arange(half, device=c.device, dtype=torch.float32) / max(half - 1, 1)
    periods = max_period * (min_period / max_period) ** k
    arg = (2 * math.pi) * c.float()[..., None] / periods
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)


class NoiseEmbedding(nn.Module):
    """``c_noise (B,) -> (B, dim)``: fixed features then a two-layer MLP (SiLU).

    Parameters
    ----------
    dim
        Output width.
    features
        Number of fixed features (even); default ``dim``.
    kind
        ``"sinusoidal"`` (geometric periods, see module docstring) or ``"fourier"`` (random
        frequencies ``~ N(0, fourier_scale^2)`` cycles per unit of ``c_noise``).
    seed
        Seed of the Fourier frequencies (stored as a buffer, so they are saved with the weights).
    """

    def __init__(
        self,
        dim: int,
        *,
        features: int | None = None,
        kind: str = "sinusoidal",
        min_period: float = 0.05,
        max_period: float = 160.0,
        fourier_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown noise embedding {kind!r}; choose one of {EMBEDDINGS}")
        features = dim if features is None else int(features)
        if features < 2 or features % 2:
            raise ValueError(f"embedding features must be even and >= 2; got {features}")
        self.kind = kind
        self.features = features
        self.min_period, self.max_period = float(min_period), float(max_period)
        if kind == "fourier":
            g = torch.Generator().manual_seed(int(seed))
            self.register_buffer("freqs", torch.randn(features // 2, generator=g) * fourier_scale)
        else:
            self.freqs = None
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def raw(self, c: Tensor) -> Tensor:
        """The fixed features ``(B, features)`` before the MLP."""
        if self.freqs is None:
            return sinusoidal_features(
                c, self.features, min_period=self.min_period, max_period=self.max_period
            )
        arg = (2 * math.pi) * c.float()[:, None] * self.freqs[None, :].float()
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1)

    def forward(self, c: Tensor) -> Tensor:
        w = self.mlp[0].weight
        return self.mlp(self.raw(c).to(w.dtype))
