"""Exact discrete data: an explicit probability table over all ``V^L`` token sequences.

For absorbing (masked) diffusion the clean-data posterior given a partly masked sequence ``x_t``
does not depend on ``t``: masking is independent of content, so::

    p(x0 = z | x_t) ∝ p(z) 1[z agrees with x_t on its unmasked positions]

and the per-position marginals of that posterior are the exact ``MaskedDenoiser`` output
``(B, L, V)`` (unmasked positions carry their own token with probability one). With ``L <= 4`` and
a small vocabulary the table is tiny, so samplers can be checked for *distributional* exactness:
total variation and chi-square of their samples against the table.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..processes import Masked

__all__ = ["DiscreteOracle", "toy_discrete"]


class DiscreteOracle:
    """A distribution over sequences of ``length`` tokens in ``[0, vocab_size)``.

    Parameters
    ----------
    probs
        Table of shape ``(V,) * L`` (``probs[z_1, ..., z_L]``) or flat ``(V**L,)`` with
        ``vocab_size`` and ``length`` given; non-negative, normalised here (float64).
    """

    def __init__(
        self, probs: Tensor, *, vocab_size: int | None = None, length: int | None = None
    ) -> None:
        p = torch.as_tensor(probs, dtype=torch.float64)
        if p.ndim == 1:
            if vocab_size is None or length is None:
                raise ValueError("a flat table needs vocab_size= and length=")
            V, L = int(vocab_size), int(length)
        else:
            V, L = int(p.shape[0]), p.ndim
            if any(s != V for s in p.shape):
                raise ValueError(f"a table must be (V,) * L; got shape {tuple(p.shape)}")
        if V < 1 or L < 1 or p.numel() != V**L:
            raise ValueError(f"the table has {p.numel()} entries; V={V}, L={L} needs {V**L}")
        if V**L > 1_000_000:
            raise ValueError(f"V^L = {V**L} sequences is too many for an explicit table")
        if bool((p < 0).any()) or not float(p.sum()) > 0 or not bool(torch.isfinite(p).all()):
            raise ValueError("table entries must be finite, non-negative, with a positive sum")
        self.vocab_size, self.length = V, L
        self.probs = (p / p.sum()).reshape(-1)
        # every sequence, in the table's row-major order: (V^L, L)
        idx = torch.arange(V**L)
        self.sequences = torch.stack([(idx // V ** (L - 1 - j)) % V for j in range(L)], dim=1)

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    def index(self, x: Tensor) -> Tensor:
        """Row of each complete sequence ``x (B, L)`` in the flat table, ``(B,)``."""
        self._check(x, allow_mask=False)
        powers = self.vocab_size ** torch.arange(self.length - 1, -1, -1, device=x.device)
        return (x.long() * powers).sum(-1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples ``(n, L)`` (int64)."""
        rows = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.sequences[rows]

    def posterior(self, x: Tensor) -> Tensor:
        """``p(x0_l = v | x)`` for partly masked ``x (B, L)``: ``(B, L, V)`` float64."""
        self._check(x, allow_mask=True)
        xs = x.long().cpu()
        known = xs != self.mask_id  # (B, L)
        agree = (self.sequences[None] == xs[:, None, :]) | ~known[:, None, :]  # (B, N, L)
        w = self.probs[None] * agree.all(-1)  # (B, N)
        z = w.sum(-1, keepdim=True)
        if bool((z == 0).any()):
            b = int(torch.nonzero(z[:, 0] == 0)[0])
            raise ValueError(
                f"sequence {xs[b].tolist()} (mask id {self.mask_id}) has probability zero under the"
                " table: no completion of its unmasked tokens is possible"
            )
        w = w / z
        onehot = torch.nn.functional.one_hot(self.sequences, self.vocab_size).to(torch.float64)
        return torch.einsum("bn,nlv->blv", w, onehot).to(x.device)

    def denoiser(self, process: Masked | None = None) -> _DiscreteDenoiser:
        """The exact ``MaskedDenoiser``-like oracle ``D(x, t, cond) -> (B, L, V)``."""
        process = Masked(vocab_size=self.vocab_size) if process is None else process
        if not isinstance(process, Masked) or process.vocab_size != self.vocab_size:
            raise ValueError(
                f"the oracle needs a Masked process with vocab_size={self.vocab_size}; got"
                f" {process!r}"
            )
        return _DiscreteDenoiser(self, process)

    def histogram(self, x: Tensor) -> Tensor:
        """Empirical frequencies of complete samples ``x (B, L)`` over the table, ``(V^L,)``."""
        counts = torch.bincount(self.index(x).cpu(), minlength=self.probs.numel())
        return counts.to(torch.float64) / x.shape[0]

    def tv(self, x: Tensor) -> float:
        """Total variation ``0.5 sum |p_hat - p|`` between samples and the table."""
        return 0.5 * float((self.histogram(x) - self.probs).abs().sum())

    def chi_square(self, x: Tensor, *, min_expected: float = 5.0) -> tuple[float, float]:
        """Pearson chi-square test of samples against the table: ``(statistic, p-value)``.

        Sequences with expected count below ``min_expected`` are pooled into one bin; a sample
        outside the table's support gives statistic ``inf`` and p-value 0.
        """
        from scipy.stats import chi2

        n = x.shape[0]
        obs = self.histogram(x) * n
        exp = self.probs * n
        if bool(((exp == 0) & (obs > 0)).any()):
            return math.inf, 0.0
        big = exp >= min_expected
        o = torch.cat([obs[big], obs[~big].sum()[None]])
        e = torch.cat([exp[big], exp[~big].sum()[None]])
        keep = e > 0
        o, e = o[keep], e[keep]
        stat = float(((o - e) ** 2 / e).sum())
        dof = max(int(keep.sum()) - 1, 1)
        return stat, float(chi2.sf(stat, dof))

    def _check(self, x: Tensor, *, allow_mask: bool) -> None:
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected tokens (B, {self.length}); got {tuple(x.shape)}")
        hi = self.mask_id if allow_mask else self.vocab_size - 1
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > hi):
            raise ValueError(
                f"tokens must lie in [0, {hi}]; got range [{int(x.min())}, {int(x.max())}]"
            )


class _DiscreteDenoiser:
    """Exact ``D(x, t, cond) = p(x0 | x_t)`` marginals for a :class:`DiscreteOracle`; ``t`` is
    accepted and ignored (the absorbing posterior does not depend on it)."""

    def __init__(self, oracle: DiscreteOracle, process: Masked) -> None:
        self.oracle = oracle
        self.process = process

    def __call__(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        self.process.check_tokens(x)
        return self.oracle.posterior(x)


def toy_discrete(
    vocab_size: int = 3,
    length: int = 3,
    *,
    contrast: float = 2.0,
    seed: int = 0,
) -> DiscreteOracle:
    """A random table over ``V^L`` sequences: ``p ∝ u^contrast``, ``u ~ U(0, 1)`` i.i.d.

    Larger ``contrast`` concentrates the mass on fewer sequences; tokens are correlated (the
    table is not a product of marginals), which is what separates exact from approximate samplers.
    """
    if not contrast > 0:
        raise ValueError(f"contrast must be positive; got {contrast}")
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(vocab_size**length, generator=g, dtype=torch.float64)
    return DiscreteOracle(u**contrast, vocab_size=vocab_size, length=length)
