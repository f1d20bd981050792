"""Samplers for masked (absorbing) token diffusion: ancestral, first-hitting, MaskGIT decoding.

The denoiser returns ``p(x0 | x_t)`` as probabilities ``(B, L, V)`` (``MaskedDenoiser`` or
:class:`sciffusion.oracles.DiscreteOracle`); tokens are ``(B, L)`` integers with
``mask_id = vocab_size``. Each masked token of ``x_t`` is unmasked by time ``s < t`` with
probability ``(alpha_s - alpha_t) / (1 - alpha_t)`` (D3PM-absorbing / MDLM, Sahoo et al. 2024,
Eq. 7), and its value is drawn from the denoiser's marginal.

Categorical draws are inverse-CDF in float64 (53-bit uniforms): the float32 Gumbel-max trick
under-samples low-probability tokens, i.e. lowers the effective temperature (Zheng et al. 2024);
``tests/solvers/test_masked.py`` measures that bias exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..processes import Masked
from ._common import Generator, check_grid, report, steps, uniform_like

__all__ = ["categorical", "first_hitting", "masked_ancestral", "maskgit"]


def categorical(probs: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF categorical draw: ``probs (..., V)`` (any scale), ``u (...)`` in ``[0, 1)``.

    Returns indices ``(...)``; computed in float64, never picks a zero-probability entry.
    """
    p = probs.to(torch.float64)
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()):
        raise ValueError("categorical probabilities must be finite and non-negative")
    cdf = torch.cumsum(p, dim=-1)
    target = u.to(torch.float64).unsqueeze(-1) * cdf[..., -1:]
    idx = (cdf <= target).sum(-1)
    return idx.clamp(max=p.shape[-1] - 1)


def _prepare(denoiser, x: Tensor, grid, name: str) -> tuple[Masked, Tensor, Tensor]:
    process = getattr(denoiser, "process", None)
    if not isinstance(process, Masked):
        raise TypeError(
            f"{name} samples masked token diffusion: it needs a denoiser whose `process` is"
            f" Masked; got {type(process).__name__}. Use the continuous solvers for Gaussian"
            " processes."
        )
    process.check_tokens(x)
    if x.ndim != 2:
        raise ValueError(f"{name} expects tokens (B, L); got shape {tuple(x.shape)}")
    return process, check_grid(grid, name=name), x.long().clone()


def _probs(denoiser, x: Tensor, t: Tensor, V: int, cond) -> Tensor:
    p = denoiser(x, t, cond)
    if p.shape != (*x.shape, V):
        raise ValueError(
            f"the token denoiser returned {tuple(p.shape)}; expected probabilities {(*x.shape, V)}"
        )
    return p.to(torch.float64)


def masked_ancestral(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """Ancestral sampling of absorbing diffusion on the grid (D3PM/MDLM reverse step).

    From ``t`` to ``s``: every masked token is unmasked with probability
    ``(alpha_s - alpha_t) / (1 - alpha_t)`` and drawn from ``D(x_t, t)``. Tokens unmasked in the
    same step are drawn independently from their marginals, so the sample law is exact only as
    the steps shrink (:func:`first_hitting` is exact at any cost). The model is called only on
    steps that unmask something (at most ``len(grid) - 1`` calls). ``generator`` may be one
    generator per sample; a grid ending at ``t = 0`` unmasks everything.
    """
    process, g, x = _prepare(denoiser, x, grid, "masked_ancestral")
    V, mask_id = process.vocab_size, process.mask_id
    alpha = process.alpha(g).tolist()
    for i in steps(len(g) - 1, progress, "masked_ancestral"):
        a_t, a_s = alpha[i], alpha[i + 1]
        u_unmask = uniform_like(tuple(x.shape), generator, x.device)
        u_token = uniform_like(tuple(x.shape), generator, x.device)
        masked = x == mask_id
        p_unmask = 1.0 if a_s >= 1 else (a_s - a_t) / (1 - a_t) if a_t < 1 else 0.0
        unmask = masked & (u_unmask < p_unmask)
        if bool(unmask.any()):
            t = torch.full((x.shape[0],), float(g[i]), dtype=torch.float64, device=x.device)
            tokens = categorical(_probs(denoiser, x, t, V, cond), u_token)
            x = torch.where(unmask, tokens, x)
        report(callback, i=i, t=float(g[i]), t_next=float(g[i + 1]), x=x)
    return x


def first_hitting(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    cond=None,
    generator: Generator = None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """First-hitting sampler (Zheng et al. 2024, Alg. 1): exact, one token per model call.

    With ``m`` tokens masked at time ``tau``, the time ``s`` at which the next one unmasks solves
    ``1 - alpha(s) = (1 - alpha(tau)) u^{1/m}`` (``u ~ U(0, 1)``: the largest of ``m`` i.i.d.
    unmasking times); one masked position, uniformly chosen, is then drawn from ``D(x, s)``.
    Only ``grid[0]`` (the start) and ``grid[-1]`` (tokens whose time falls below a positive end
    stay masked) are used. NFE = the number of masked tokens; times are per sample.
    """
    process, g, x = _prepare(denoiser, x, grid, "first_hitting")
    V, mask_id = process.vocab_size, process.mask_id
    B = x.shape[0]
    tau = torch.full((B,), float(g[0]), dtype=torch.float64, device=x.device)
    t_end = float(g[-1])
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    rows = torch.arange(B, device=x.device)
    for i in steps(int((x == mask_id).sum(1).max()), progress, "first_hitting"):
        u = uniform_like((B, 3), generator, x.device)
        masked = x == mask_id
        m = masked.sum(1)
        active = (m > 0) & ~done
        if not bool(active.any()):
            break
        one_minus = (1 - process.alpha(tau)) * u[:, 0] ** (1.0 / m.clamp(min=1))
        s = process.t_of_log_snr(torch.log1p(-one_minus) - torch.log(one_minus))
        s = torch.where(one_minus <= 0, torch.zeros_like(s), s)
        stop = active & (s < t_end)
        done = done | stop
        active = active & ~stop
        if not bool(active.any()):
            break
        # the k-th masked position, k = floor(u m)
        k = torch.minimum((u[:, 1] * m).long(), (m - 1).clamp(min=0))
        order = torch.cumsum(masked.long(), 1) - 1
        pos = torch.argmax((masked & (order == k[:, None])).long(), dim=1)
        tau = torch.where(active, s, tau)
        probs = _probs(denoiser, x, tau, V, cond)[rows, pos]
        tok = categorical(probs, u[:, 2])
        new = x.clone()
        new[rows, pos] = tok
        x = torch.where(active[:, None], new, x)
        report(callback, i=i, t=tau.clone(), x=x)
    return x


def _masked_fraction(name: str | Callable[[float], float], process: Masked):
    if callable(name):
        return name
    if name == "process":
        return lambda t: 1.0 - float(process.alpha(t))
    if name == "cosine":  # MaskGIT's gamma(r) = cos(pi r / 2) at progress r = 1 - t
        return lambda t: math.sin(0.5 * math.pi * t)
    raise ValueError(f"masked_fraction must be 'process', 'cosine' or a callable; got {name!r}")


def maskgit(
    denoiser,
    x: Tensor,
    grid: Tensor,
    *,
    temperature: float = 1.0,
    choice_temperature: float = 4.5,
    masked_fraction: str | Callable[[float], float] = "process",
    cond=None,
    generator: Generator = None,
    callback=None,
    progress: bool = False,
) -> Tensor:
    """Confidence-ordered parallel decoding with remasking (MaskGIT, Chang et al. 2022, Sec. 3.2).

    Each step draws every masked token from ``D(x, t_i)`` (at ``temperature``), scores it by
    ``log p(token) + choice_temperature (1 - r) g`` (``g`` Gumbel, ``r`` the progress
    ``(i + 1) / n``), keeps the most confident and remasks the rest so that
    ``floor(L * masked_fraction(t_{i+1}))`` stay masked (at least one unmasked per step, all
    at the end). ``masked_fraction``: ``process`` (``1 - alpha(t)``), ``cosine`` (MaskGIT's
    schedule) or a callable of ``t``. One call per step. Not an exact sampler: ``choice_temperature
    = 0`` over-weights confident tokens; a huge one with one token per step is exact.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if choice_temperature < 0:
        raise ValueError(f"choice_temperature must be >= 0; got {choice_temperature}")
    process, g, x = _prepare(denoiser, x, grid, "maskgit")
    frac = _masked_fraction(masked_fraction, process)
    V, mask_id = process.vocab_size, process.mask_id
    B, L = x.shape
    n = len(g) - 1
    for i in steps(n, progress, "maskgit"):
        u_tok = uniform_like((B, L), generator, x.device)
        u_gum = uniform_like((B, L), generator, x.device).clamp(min=1e-300)
        masked = x == mask_id
        m = masked.sum(1)
        if not bool(masked.any()):
            break
        t = torch.full((B,), float(g[i]), dtype=torch.float64, device=x.device)
        p = _probs(denoiser, x, t, V, cond)
        if temperature != 1.0:
            p = p ** (1.0 / temperature)
        tok = categorical(p, u_tok)
        logp = torch.log(torch.gather(p / p.sum(-1, keepdim=True), -1, tok[..., None])[..., 0])
        r = (i + 1) / n
        gumbel = -torch.log(-torch.log(u_gum))
        conf = logp + choice_temperature * (1 - r) * gumbel
        conf = torch.where(masked, conf, torch.full_like(conf, math.inf))
        last = i == n - 1
        keep_masked = (
            torch.zeros_like(m)
            if last
            else torch.clamp(
                torch.full_like(m, math.floor(L * frac(float(g[i + 1])) + 1e-9)), max=m - 1
            ).clamp(min=0)
        )
        # remask the keep_masked least confident among the masked positions
        rank = torch.argsort(torch.argsort(conf, dim=1), dim=1)  # 0 = least confident
        remask = masked & (rank < keep_masked[:, None])
        x = torch.where(masked & ~remask, tok, x)
        report(callback, i=i, t=float(g[i]), t_next=float(g[i + 1]), x=x)
    return x
