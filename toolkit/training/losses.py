"""Training-loss machinery as pure functions: targets, weights, time sampling, noise assignment.

Every Gaussian loss here is a weighted denoising loss ``w(t) |x0_hat - x0|^2`` (Kingma & Gao 2023,
"Understanding diffusion objectives") computed *in the network's native space*: a network that
predicts ``eps`` (``v``, velocity, ...) is trained on ``|out - eps|^2`` times the ratio
``w(t) / w_native(t)``, where ``w_native`` is the weight that makes the native MSE equal to an x0
MSE (:func:`sciffusion.denoiser.native_weight`). The native target stays finite where the
conversion to x0 does not (``alpha -> 0`` at the noise end of flows and cosine schedules).

Weightings ``w(t)`` in x0 space, with ``SNR = alpha^2 / sigma^2`` and ``s = sigma / alpha``:

- ``uniform``: the prediction's own MSE (``w = w_native``, ratio 1);
- ``snr``: ``SNR`` (= eps-MSE; Ho et al. 2020);
- ``min-snr``: ``min(SNR, gamma)``, gamma = 5 (Hang et al. 2023, Eq. 8);
- ``edm``: ``(s^2 + sigma_data^2) / (s sigma_data)^2`` (Karras et al. 2022, Eq. 8 / Table 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._tensor import append_dims, bcast
from ..denoiser import native_weight
from ..processes import GaussianProcess, Process

__all__ = [
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "drop_condition",
    "ema_decay_at",
    "expand_mask",
    "immiscible_assign",
    "loss_weight",
    "masked_mean",
    "native_target",
    "remove_mean",
    "sample_time",
    "x0_weight",
]

WEIGHTINGS = ("uniform", "snr", "min-snr", "edm")
TIME_SAMPLINGS = ("uniform", "stratified", "lognormal", "logit-normal")


def x0_weight(
    weighting: str,
    prediction: str,
    process: GaussianProcess,
    t: Tensor,
    *,
    sigma_data: float = 1.0,
    gamma: float = 5.0,
) -> Tensor:
    """The weight ``w(t)`` of ``|x0_hat - x0|^2`` for a weighting name (module docstring)."""
    if weighting == "uniform":
        return native_weight(prediction, process, t, sigma_data)
    a, s = process.alpha(t), process.sigma(t)
    snr = (a / s) ** 2
    if weighting == "snr":
        return snr
    if weighting == "min-snr":
        return torch.clamp(snr, max=gamma)
    if weighting == "edm":
        st = s / a
        return (st**2 + sigma_data**2) / (st * sigma_data) ** 2
    raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")


def loss_weight(
    weighting: str,
    prediction: str,
    process: GaussianProcess,
    t: Tensor,
    *,
    sigma_data: float = 1.0,
    gamma: float = 5.0,
) -> Tensor:
    """Per-sample factor on the native MSE: ``w(t) / w_native(t)``, float64, shape ``(B,)``.

    Exact limits where both weights vanish or blow up together (eps with ``snr``/``min-snr``, edm
    with ``edm``); any other non-finite ratio (``alpha`` or ``sigma`` exactly 0, a set of measure
    zero under every time sampling) gets weight 0 rather than poisoning the batch.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")
    t = t.to(torch.float64)
    if weighting == "uniform" or (weighting, prediction) in (("snr", "eps"), ("edm", "edm")):
        return torch.ones_like(t)
    if (weighting, prediction) == ("min-snr", "eps"):  # min(SNR, gamma) / SNR
        snr = (process.alpha(t) / process.sigma(t)) ** 2
        return torch.clamp(gamma / snr, max=1.0)
    w = x0_weight(weighting, prediction, process, t, sigma_data=sigma_data, gamma=gamma)
    ratio = w / native_weight(prediction, process, t, sigma_data)
    return torch.where(torch.isfinite(ratio), ratio, torch.zeros_like(ratio))


def native_target(
    prediction: str,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    process: GaussianProcess,
    *,
    mu: Tensor | None = None,
    sigma_data: float = 1.0,
) -> Tensor:
    """The regression target of a ``prediction``-type network for ``x_t = marginal(x0, t, noise)``.

    Written from ``y0 = x0 - mu`` and ``noise`` directly (no division by ``alpha``): eps ``noise``;
    x0 ``x0``; v ``alpha noise - sigma y0``; score ``-noise / sigma``; velocity
    ``alpha' y0 + sigma' noise``; edm ``(s y0 / sigma_data - sigma_data noise) / sqrt(s^2 +
    sigma_data^2)`` with ``s = sigma / alpha`` (the ``F`` of Karras et al. 2022, Eq. 8).
    """
    t = t.to(torch.float64)
    y0 = x0 if mu is None else x0 - mu

    def cf(v: Tensor) -> Tensor:
        return bcast(v, x0).to(x0.dtype)

    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    a, s = process.alpha(t), process.sigma(t)
    if prediction == "v":
        return cf(a) * noise - cf(s) * y0
    if prediction == "score":
        return -noise / cf(s)
    if prediction == "velocity":
        return cf(process.d_alpha(t)) * y0 + cf(process.d_sigma(t)) * noise
    if prediction == "edm":
        st = s / a
        r = torch.sqrt(st**2 + sigma_data**2)
        return cf(st / (sigma_data * r)) * y0 - cf(sigma_data / r) * noise
    raise ValueError(
        f"unknown prediction {prediction!r}; choose one of eps, x0, v, score, velocity, edm"
    )


def sample_time(
    kind: str,
    n: int,
    process: Process,
    *,
    generator: torch.Generator | None,
    t_eps: float,
    t_max: float,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training times ``(n,)`` in float64 inside ``[t_eps, t_max]``.

    ``uniform``: ``U[t_eps, t_max]``; ``stratified``: one draw per ``1/n`` stratum (low-discrepancy,
    Kingma et al. 2021, App. I; MDLM); ``lognormal``: ``ln(sigma/alpha) ~ N(p_mean, p_std^2)``
    mapped through ``t_of_log_snr`` and clipped (EDM, Karras et al. 2022, Sec. 5);
    ``logit-normal``: ``logit(t) ~ N(m, s^2)`` (SD3, Esser et al. 2024, Eq. 19), scaled into range.
    """
    if not 0 <= t_eps < t_max <= 1:
        raise ValueError(f"need 0 <= t_eps < t_max <= 1; got t_eps={t_eps}, t_max={t_max}")
    device = device if device is not None else (generator.device if generator else "cpu")
    kw: dict[str, Any] = dict(generator=generator, device=device, dtype=torch.float64)
    span = t_max - t_eps
    if kind == "uniform":
        return t_eps + span * torch.rand(n, **kw)
    if kind == "stratified":
        u = (torch.rand(1, **kw) + torch.arange(n, device=device, dtype=torch.float64) / n) % 1.0
        return t_eps + span * u
    if kind == "logit-normal":
        return t_eps + span * torch.sigmoid(logit_mean + logit_std * torch.randn(n, **kw))
    if kind == "lognormal":
        log_s = p_mean + p_std * torch.randn(n, **kw)
        return process.t_of_log_snr(-2 * log_s).clamp(t_eps, t_max)
    raise ValueError(f"unknown time sampling {kind!r}; choose one of {TIME_SAMPLINGS}")


def expand_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    """A bool mask over the leading dims of ``x`` (``(B, N)`` for ``(B, N, F)``), expanded to x."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = real element); got {mask.dtype}")
    if mask.ndim > x.ndim or tuple(mask.shape) != tuple(x.shape[: mask.ndim]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must match the leading dims of the data"
            f" {tuple(x.shape)}, e.g. (B, N) for sets (B, N, F)"
        )
    if not bool(mask.reshape(mask.shape[0], -1).any(dim=1).all()):
        raise ValueError("every sample needs at least one real element (its mask is all False)")
    return append_dims(mask, x.ndim).expand(x.shape).to(x.dtype if x.is_floating_point() else bool)


def masked_mean(err: Tensor, mask: Tensor | None) -> Tensor:
    """Per-sample mean ``(B,)`` of ``err (B, *event)`` over real entries (all if no mask)."""
    if mask is None:
        return err.reshape(err.shape[0], -1).mean(dim=1)
    m = mask.reshape(err.shape[0], -1)
    return (err.reshape(err.shape[0], -1) * m).sum(dim=1) / m.sum(dim=1)


def remove_mean(x: Tensor, mask: Tensor | None, k: int) -> Tensor:
    """Subtract the (masked) centre of mass over elements from the first ``k`` features.

    ``x (B, N, F)``, ``mask (B, N)``; padded elements stay zero. Zero-CoM noise lives in the
    ``(N - 1) k``-dimensional subspace (Hoogeboom et al. 2022, EDM for molecules, Sec. 3).
    """
    if x.ndim != 3 or not 0 < k <= x.shape[-1]:
        raise ValueError(
            f"zero_com={k} needs set data (B, N, F) with F >= {k}; got shape {tuple(x.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"zero_com needs a per-element mask (B, N) = {tuple(x.shape[:2])}; got"
            f" {tuple(mask.shape)}"
        )
    m = (
        torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        if mask is None
        else mask.to(x.dtype)
    )
    coords = x[..., :k]
    com = (coords * m[..., None]).sum(dim=1, keepdim=True) / m.sum(dim=1)[:, None, None]
    centred = (coords - com) * m[..., None]
    return torch.cat([centred, x[..., k:]], dim=-1)


@torch.no_grad()
def immiscible_assign(x0: Tensor, noise: Tensor, mask: Tensor | None = None) -> Tensor:
    """Reorder the batch of ``noise`` to minimise the total data-noise distance (Li et al. 2024).

    Solves the assignment ``min_perm sum_i |m_i (x0_i - noise_perm(i))|^2`` with
    :func:`scipy.optimize.linear_sum_assignment` (Immiscible Diffusion, Alg. 1); distances only
    count sample ``i``'s real entries (mask ``m_i``). The result is a permutation of the noise
    batch, so it is the same multiset of N(0, I) draws.
    """
    from scipy.optimize import linear_sum_assignment

    B = x0.shape[0]
    xf = x0.reshape(B, -1).double()
    nf = noise.reshape(B, -1).double()
    m = torch.ones_like(xf) if mask is None else mask.reshape(B, -1).double()
    cost = (m * xf**2).sum(1, keepdim=True) - 2 * (m * xf) @ nf.T + m @ (nf**2).T
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    perm = torch.as_tensor(cols[rows.argsort()], device=noise.device)
    return noise[perm]


def drop_condition(cond: Any, p: float, generator: torch.Generator | None, batch: int):
    """Conditioning dropout for classifier-free guidance (Ho & Salimans 2022): zero the condition
    of each sample with probability ``p``. Returns ``(cond, dropped (B,) bool)``.

    Tensors are zeroed per sample; a mapping has each of its tensors zeroed (its ``mask`` and
    ``mu`` are not conditions and are left alone). Zeros are the null condition that
    :func:`sciffusion.guidance.cfg` feeds at sampling time.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"cond_dropout must lie in [0, 1]; got {p}")
    device = generator.device if generator is not None else "cpu"
    dropped = torch.rand(batch, generator=generator, device=device) < p
    if cond is None or p == 0:
        return cond, dropped

    def zero(c: Tensor) -> Tensor:
        keep = append_dims(~dropped.to(c.device), c.ndim)
        return torch.where(keep, c, torch.zeros_like(c))

    if isinstance(cond, Tensor):
        return zero(cond), dropped
    if isinstance(cond, Mapping):
        out = {
            k: v if k in ("mask", "mu") or not isinstance(v, Tensor) else zero(v)
            for k, v in cond.items()
        }
        return out, dropped
    raise TypeError(f"cannot drop a condition of type {type(cond).__name__}; use tensors or a dict")


def ema_decay_at(n: int, decay: float) -> float:
    """EMA decay after ``n`` updates with warm-up: ``min(decay, (1 + n) / (10 + n))``.

    Early averages track the weights closely (0.1, 0.18, 0.25, ...) instead of staying near the
    random initialisation (tensorflow ``ExponentialMovingAverage(num_updates=...)``).
    """
    return min(float(decay), (1.0 + n) / (10.0 + n))
