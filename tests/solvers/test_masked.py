"""Masked-token samplers against an exact table over V^L sequences (``DiscreteOracle``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from sciffusion.oracles import DiscreteOracle, toy_discrete
from sciffusion.processes import Masked
from sciffusion.solvers import (
    categorical,
    first_hitting,
    make_grid,
    masked_ancestral,
    maskgit,
    sdedit,
)

V, L = 3, 3


@pytest.fixture(scope="module")
def oracle():
    return toy_discrete(V, L, contrast=2.0, seed=0)


def test_oracle_posterior_is_the_conditional_of_the_table(oracle):
    m = oracle.mask_id
    x = torch.tensor([[m, m, m], [0, m, 2], [1, 1, m], [2, 0, 1]])
    post = oracle.posterior(x)
    table = oracle.probs.reshape(V, V, V)
    assert torch.allclose(post[0, 0], table.sum((1, 2)))  # fully masked: marginals
    assert torch.allclose(post[0, 2], table.sum((0, 1)))
    cond = table[0, :, 2] / table[0, :, 2].sum()  # x_2 | x_1 = 0, x_3 = 2
    assert torch.allclose(post[1, 1], cond)
    assert torch.equal(post[1, 0], torch.tensor([1.0, 0, 0], dtype=torch.float64))  # carried
    assert torch.allclose(post[2, 2], table[1, 1] / table[1, 1].sum())
    assert torch.equal(post[3], torch.nn.functional.one_hot(x[3], V).double())
    d = oracle.denoiser()
    assert torch.equal(d(x, torch.full((4,), 0.9)), d(x, torch.full((4,), 0.1)))  # t-free


def test_oracle_sampling_and_statistics(oracle, gen):
    x = oracle.sample(20_000, generator=gen)
    assert oracle.tv(x) < 0.02
    _, p = oracle.chi_square(x)
    assert p > 1e-3
    wrong = DiscreteOracle(torch.ones(V**L), vocab_size=V, length=L).sample(20_000, generator=gen)
    assert oracle.chi_square(wrong)[1] < 1e-6 and oracle.tv(wrong) > 0.1


def test_oracle_errors():
    with pytest.raises(ValueError, match="non-negative"):
        DiscreteOracle(-torch.ones(4), vocab_size=2, length=2)
    with pytest.raises(ValueError, match=r"\(V,\) \* L"):
        DiscreteOracle(torch.ones(2, 3))
    zero = DiscreteOracle(torch.tensor([1.0, 0.0, 0.0, 1.0]), vocab_size=2, length=2)
    with pytest.raises(ValueError, match="probability zero"):
        zero.posterior(torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="vocab_size=2"):
        zero.denoiser(Masked(vocab_size=5))


def test_first_hitting_is_exact(oracle):
    """FHS draws the exact law whatever the schedule: chi-square against the table; L calls."""
    calls = []
    d = oracle.denoiser(Masked(vocab_size=V, schedule="cosine"))
    counting = lambda x, t, cond=None: calls.append(1) or d(x, t, cond)  # noqa: E731
    counting.process = d.process
    x = d.process.prior_sample((20_000, L))
    out = first_hitting(
        counting,
        x,
        make_grid(d.process, 1, "uniform_t"),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(calls) == L
    assert oracle.tv(out) < 0.02 and oracle.chi_square(out)[1] > 1e-3


def test_first_hitting_from_a_partial_start(oracle):
    """SDEdit-style start: mask exact samples to t = 0.6, complete them: still the table."""
    d = oracle.denoiser()
    x0 = oracle.sample(20_000, generator=torch.Generator().manual_seed(1))
    xt, grid = sdedit(
        d.process, x0, 0.6, 1, spacing="uniform_t", generator=torch.Generator().manual_seed(2)
    )
    out = first_hitting(d, xt, grid, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out[xt != d.process.mask_id], xt[xt != d.process.mask_id])
    assert oracle.tv(out) < 0.02 and oracle.chi_square(out)[1] > 1e-3


def _ancestral_law(oracle: DiscreteOracle, process: Masked, grid) -> torch.Tensor:
    """Exact law of ``masked_ancestral`` by dynamic programming over partial sequences."""
    m = process.mask_id
    alpha = process.alpha(grid).tolist()
    law = {tuple([m] * L): 1.0}
    for i in range(len(alpha) - 1):
        a_t, a_s = alpha[i], alpha[i + 1]
        p = 1.0 if a_s >= 1 else (a_s - a_t) / (1 - a_t)
        new: dict[tuple, float] = {}
        for state, w in law.items():
            masked = [j for j in range(L) if state[j] == m]
            post = oracle.posterior(torch.tensor([state]))[0].tolist() if masked else None
            for keep in itertools.product([False, True], repeat=len(masked)):
                picked = [j for j, k in zip(masked, keep, strict=True) if k]
                pw = p ** len(picked) * (1 - p) ** (len(masked) - len(picked))
                if pw == 0:
                    continue
                for vals in itertools.product(range(V), repeat=len(picked)):
                    s = list(state)
                    q = pw
                    for j, v in zip(picked, vals, strict=True):
                        s[j] = v
                        q *= post[j][v]
                    if q > 0:
                        new[tuple(s)] = new.get(tuple(s), 0.0) + w * q
        law = new
    out = torch.zeros(V**L, dtype=torch.float64)
    for state, w in law.items():
        out[int(oracle.index(torch.tensor([state]))[0])] += w
    return out


def test_ancestral_matches_its_exact_law_and_converges(oracle):
    """Empirical law == the DP law (chi-square); one step samples the product of marginals, the
    law approaches the table as steps shrink (tokens unmasked together are drawn independently)."""
    d = oracle.denoiser()
    process = d.process
    grid = make_grid(process, 4, "uniform_t")
    law = _ancestral_law(oracle, process, grid)
    out = masked_ancestral(
        d, process.prior_sample((20_000, L)), grid, generator=torch.Generator().manual_seed(0)
    )
    ref = DiscreteOracle(law, vocab_size=V, length=L)
    assert ref.tv(out) < 0.02 and ref.chi_square(out)[1] > 1e-3
    table = oracle.probs.reshape(V, V, V)
    product = torch.einsum("a,b,c->abc", table.sum((1, 2)), table.sum((0, 2)), table.sum((0, 1)))
    one_step = _ancestral_law(oracle, process, make_grid(process, 1, "uniform_t"))
    assert torch.allclose(one_step, product.reshape(-1), atol=1e-14)
    tvs = [
        0.5
        * float(
            (_ancestral_law(oracle, process, make_grid(process, n, "uniform_t")) - oracle.probs)
            .abs()
            .sum()
        )
        for n in (1, 4, 16, 64)
    ]
    assert tvs[0] > 0.05 and all(b < a for a, b in itertools.pairwise(tvs))
    assert tvs[-1] < 0.2 * tvs[0]


def test_maskgit_random_order_is_exact_and_confidence_order_is_biased(oracle):
    d = oracle.denoiser()
    x = d.process.prior_sample((20_000, L))
    grid = make_grid(d.process, L, "uniform_t")  # one token per step
    rand = maskgit(d, x, grid, choice_temperature=1e9, generator=torch.Generator().manual_seed(0))
    assert oracle.tv(rand) < 0.02 and oracle.chi_square(rand)[1] > 1e-3
    greedy = maskgit(d, x, grid, choice_temperature=0.0, generator=torch.Generator().manual_seed(0))
    assert oracle.tv(greedy) > 0.03 and oracle.chi_square(greedy)[1] < 1e-6
    assert not bool((greedy == d.process.mask_id).any())


def test_float64_categorical_vs_float32_gumbel():
    """Zheng et al. (2024): float32 Gumbel-max under-samples rare tokens (lower effective
    temperature). Exact laws, no Monte Carlo: enumerate all 2^24 float32 uniforms of the race
    ``argmax p_i / E_i``, ``E = 1e-10 - log(u + 1e-10)`` (MDLM's code) for p = (1 - q, q); our
    float64 inverse-CDF categorical gives the rare token probability q to 1e-15."""
    q = 1e-7
    u = (torch.arange(2**24, dtype=torch.float64) * 2.0**-24).to(torch.float32)
    E = 1e-10 - (u + 1e-10).log()
    p = torch.tensor([1 - q, q], dtype=torch.float32)
    r0, r1 = p[0] / E, p[1] / E  # r0 ascending in u
    top = r1[r1 > r0[0]]
    wins = torch.searchsorted(r0, top, side="left").to(torch.float64).sum()
    p32 = float(wins) / 2.0**48  # P(token 1 wins) under the float32 law
    assert p32 < 0.8 * q  # 27% of the rare token's mass is lost
    # float64 inverse CDF: token 1 iff u >= u*; find u* by bisection on `categorical` itself
    probs = torch.tensor([1 - q, q], dtype=torch.float64)
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if int(categorical(probs, torch.tensor(mid, dtype=torch.float64))) == 1:
            hi = mid
        else:
            lo = mid
    assert math.isclose(1.0 - hi, q, rel_tol=1e-8)
    zero = torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64)
    draws = categorical(zero.expand(10_000, 3), torch.rand(10_000, dtype=torch.float64))
    assert not bool((draws == 1).any())
