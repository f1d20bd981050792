"""Distribution metrics used by benchmarks, the toy job and tests."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sliced_wasserstein"]


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    *,
    n_projections: int = 128,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced 2-Wasserstein distance between two sample sets ``(N, *event)`` and ``(M, *event)``.

    ``SW_2 = sqrt(mean_theta W_2^2(theta^T a, theta^T b))`` over random unit directions; 1-D
    distances compare quantiles (exact for ``N = M`` via sorting).
    """
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sample dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa, _ = torch.sort(a @ theta, dim=0)
    pb, _ = torch.sort(b @ theta, dim=0)
    if pa.shape[0] != pb.shape[0]:
        n = max(pa.shape[0], pb.shape[0])
        q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        pa = torch.quantile(pa, q, dim=0)
        pb = torch.quantile(pb, q, dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())
