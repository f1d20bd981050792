"""Masked (absorbing-state) discrete diffusion over tokens ``(B, L)`` (D3PM-absorbing, MDLM).

Each token is kept with probability ``alpha(t)`` and replaced by ``mask_id = vocab_size``
otherwise; ``alpha(0) = 1`` and ``alpha(1) = 0``. ``log_snr`` is the log-odds of a kept token,
``log(alpha / (1 - alpha))``, so grid functions work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import HALF_PI, Process, as_t

__all__ = ["Masked"]

_SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class Masked(Process):
    """Absorbing diffusion; keep rate ``linear`` (``1 - t``) or ``cosine`` (``cos(pi t / 2)``)."""

    name: ClassVar[str] = "masked"
    is_discrete: ClassVar[bool] = True
    vocab_size: int = 2
    schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {_SCHEDULES}")

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def t_min(self) -> float:
        return 0.0

    def alpha(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        return 1 - t if self.schedule == "linear" else torch.cos(HALF_PI * t)

    def d_alpha(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        if self.schedule == "linear":
            return -torch.ones_like(t)
        return -HALF_PI * torch.sin(HALF_PI * t)

    def log_snr(self, t: float | Tensor) -> Tensor:
        t = as_t(t)
        if self.schedule == "linear":
            return torch.log1p(-t) - torch.log(t)
        one_minus_a = 2 * torch.sin(HALF_PI * t / 2) ** 2  # 1 - cos(x), free of cancellation
        return torch.log(self.alpha(t)) - torch.log(one_minus_a)

    def t_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        a = torch.sigmoid(as_t(log_snr))
        return 1 - a if self.schedule == "linear" else torch.acos(a) / HALF_PI

    def check_tokens(self, x: Tensor) -> Tensor:
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(
                f"the masked process works on integer token tensors (B, L); got dtype {x.dtype}."
                " Convert with x.long()."
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > self.mask_id):
            raise ValueError(
                f"tokens must lie in [0, {self.vocab_size - 1}] (or be the mask id {self.mask_id});"
                f" got range [{int(x.min())}, {int(x.max())}]. Is vocab_size={self.vocab_size}"
                " right?"
            )
        return x

    def noise_like(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Uniform draws ``u ~ U(0, 1)``: a token is masked where ``u >= alpha(t)``."""
        return torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor, mu: Tensor | None = None) -> Tensor:
        self.check_tokens(x0)
        if noise.shape != x0.shape:
            raise ValueError(
                f"noise shape {tuple(noise.shape)} differs from tokens {tuple(x0.shape)}"
            )
        a = self.alpha(t.to(torch.float64)).reshape(-1, *([1] * (x0.ndim - 1)))
        return torch.where(noise.to(torch.float64) < a, x0, torch.full_like(x0, self.mask_id))

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        mu: Tensor | None = None,
        dtype: torch.dtype = torch.long,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """All tokens masked."""
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)
