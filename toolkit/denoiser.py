"""The denoiser contract (docs/design.md, contract 2): ``D(x, t, cond=None) -> x0_hat``.

Every solver, guidance transform and inverse-problem method calls a denoiser and nothing else. A
denoiser is any callable with that signature and a ``process`` attribute: a trained network
wrapped by :class:`Denoiser`, an exact oracle (:mod:`sciffusion.oracles`), or a transform of
another denoiser (:func:`sciffusion.guidance.cfg`, data consistency, ...).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._tensor import as_time, bcast, check_finite, get_mu
from .conversions import check_prediction, to_x0
from .processes import GaussianProcess, Masked, Process

__all__ = ["Denoiser", "DenoiserLike", "MaskedDenoiser", "edm_coefficients", "native_weight"]


@runtime_checkable
class DenoiserLike(Protocol):
    """What solvers need: ``denoiser(x, t, cond=None) -> x0_hat`` and ``denoiser.process``."""

    process: Process

    def __call__(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor: ...


def edm_coefficients(a: Tensor, s: Tensor, sigma_data: float) -> tuple[Tensor, Tensor]:
    """EDM preconditioning ``(c_skip, c_out)`` in the VE frame ``sigma~ = sigma / alpha``.

    ``y0_hat = c_skip * y / alpha + c_out * F`` (Karras et al. 2022, Table 1).
    """
    st = s / a
    c_skip = sigma_data**2 / (st**2 + sigma_data**2)
    c_out = st * sigma_data / torch.sqrt(st**2 + sigma_data**2)
    return c_skip, c_out


def native_weight(
    prediction: str, process: GaussianProcess, t: Tensor, sigma_data: float = 1.0
) -> Tensor:
    """Weight ``w(t)`` such that the prediction's own MSE equals ``w * |x0_hat - x0|^2``.

    eps: SNR; x0: 1; v: (alpha^2 + sigma^2)^2 / sigma^2; score: alpha^2 / sigma^4;
    velocity: (alpha' - sigma' alpha / sigma)^2; edm: 1 / c_out^2.
    """
    a, s = process.alpha(t), process.sigma(t)
    if prediction == "eps":
        return (a / s) ** 2
    if prediction == "x0":
        return torch.ones_like(t)
    if prediction == "v":
        return (a**2 + s**2) ** 2 / s**2
    if prediction == "score":
        return a**2 / s**4
    if prediction == "velocity":
        return (process.d_alpha(t) - process.d_sigma(t) * a / s) ** 2
    if prediction == "edm":
        return 1 / edm_coefficients(a, s, sigma_data)[1] ** 2
    check_prediction(prediction)
    raise AssertionError  # unreachable


class Denoiser(nn.Module):
    """Wrap a network ``net(x_in, c_noise, cond) -> out`` as a denoiser ``D(x, t, cond) -> x0_hat``.

    Parameters
    ----------
    net
        Any module taking the scaled input ``c_in(t) * x``, the noise conditioning
        ``process.noise_cond(t)`` (shape ``(B,)``) and the condition.
    process
        A Gaussian process (discrete token processes use :class:`MaskedDenoiser`).
    prediction
        What the network outputs: ``eps``, ``x0``, ``v``, ``score``, ``velocity`` or ``edm``
        (EDM preconditioning ``x0 = c_skip x + c_out F`` in the VE frame).
    sigma_data
        Data standard deviation used by the input scaling and by ``edm``.
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process,
        prediction: str = "eps",
        *,
        sigma_data: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(process, GaussianProcess):
            raise TypeError(
                f"Denoiser needs a Gaussian process; got {type(process).__name__}."
                " Use sciffusion.MaskedDenoiser for token (masked) diffusion."
            )
        self.net = net
        self.process = process
        self.prediction = check_prediction(prediction)
        self.sigma_data = float(sigma_data)

    def raw(self, x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The network's own output at ``(x, t)`` (used by training losses)."""
        c_in = bcast(self.process.input_scale(t, self.sigma_data).to(x.dtype), x)
        return self.net(c_in * x, self.process.noise_cond(t).to(x.dtype), cond)

    def output_to_x0(self, out: Tensor, x: Tensor, t: Tensor, mu: Tensor | None) -> Tensor:
        if self.prediction != "edm":
            return to_x0(self.prediction, out, x, t, self.process, mu=mu)
        a, s = bcast(self.process.alpha(t), x), bcast(self.process.sigma(t), x)
        c_skip, c_out = edm_coefficients(a, s, self.sigma_data)
        y = x if mu is None else x - mu
        y0 = c_skip * y / a + c_out * out
        return y0 if mu is None else y0 + mu

    def forward(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        check_finite(x, "denoiser input x")
        t = as_time(t, x)
        mu = self.process.check_mu(get_mu(cond), x)
        out = self.raw(x, t, cond)
        if out.shape != x.shape:
            raise ValueError(
                f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)};"
                " a denoiser network must return its input's shape (check out_channels)"
            )
        return self.output_to_x0(out, x, t, mu)


class MaskedDenoiser(nn.Module):
    """Token denoiser for the masked process: ``D(x, t, cond) -> p(x0 | x_t)``, shape ``(B, L, V)``.

    The network returns logits ``(B, L, V)`` (or ``V + 1``; the mask logit is dropped). Unmasked
    tokens are carried over (probability one on their value), as the absorbing posterior requires.
    """

    def __init__(self, net: nn.Module, process: Masked) -> None:
        super().__init__()
        if not isinstance(process, Masked):
            raise TypeError(f"MaskedDenoiser needs a Masked process, got {type(process).__name__}")
        self.net = net
        self.process = process

    def logits(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        self.process.check_tokens(x)
        t = as_time(t, x, dtype=torch.float32)
        out = self.net(x, self.process.noise_cond(t).float(), cond)
        V = self.process.vocab_size
        if out.shape[:-1] != x.shape or out.shape[-1] not in (V, V + 1):
            raise ValueError(
                f"token network returned {tuple(out.shape)}; expected {(*x.shape, V)} logits"
            )
        return out[..., :V]

    def forward(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        probs = torch.softmax(self.logits(x, t, cond).double(), dim=-1)
        keep = x != self.process.mask_id
        onehot = nn.functional.one_hot(
            x.clamp(max=self.process.vocab_size - 1), self.process.vocab_size
        )
        return torch.where(keep[..., None], onehot.to(probs.dtype), probs)
