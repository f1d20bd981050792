"""Sequential Monte Carlo on diffusion paths: twisted SMC (TDS), FK steering, FK correctors.

All three run ``K`` particles along a reverse DDPM chain on the grid (the DDIM ``eta = 1`` kernel
``x' ~ N(c_x x + c_x0 x0_hat, c^2)``), weight them in log space, and resample systematically when
the effective sample size ``ESS = 1 / sum w_k^2`` drops below ``ess_threshold * K``. They return
an :class:`SMCResult`: particles with normalised log-weights (weighted estimates use
``softmax(log_weights)``; :func:`resample` turns them into an equally weighted set).

They are algorithms on top of the denoiser contract (DESIGN 4), not denoiser transforms: the
weights need the whole particle population.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..solvers._common import c, noise_like, prepare, report, steps
from .dc import check_problem, match_batch, with_condition
from .operators import LinearOperator, cg, inner

__all__ = [
    "SMCResult",
    "annealed_target",
    "cfg_target",
    "effective_sample_size",
    "fk_corrector",
    "fk_steering",
    "product_target",
    "resample",
    "systematic_resample",
    "twisted_smc",
]


class SMCResult(NamedTuple):
    """Particles ``(K, *event)``, normalised ``log_weights (K,)`` (logsumexp 0), the ESS after
    each step's reweighting ``(n_steps,)`` and the number of resampling events."""

    particles: Tensor
    log_weights: Tensor
    ess: Tensor
    n_resampled: int


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """``ESS = 1 / sum_k w_k^2`` of normalised weights ``w = softmax(log_weights)``."""
    lw = log_weights - torch.logsumexp(log_weights, 0)
    return torch.exp(-torch.logsumexp(2 * lw, 0))


def systematic_resample(log_weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Systematic resampling (Kitagawa 1996): indices ``(K,)`` from one uniform draw.

    ``u_k = (U + k) / K``; index ``k`` goes to the first particle whose cumulative weight
    exceeds ``u_k``. Unbiased, lowest variance of the standard schemes.
    """
    K = log_weights.shape[0]
    w = torch.softmax(log_weights.to(torch.float64), 0)
    cdf = torch.cumsum(w, 0)
    cdf[-1] = 1.0
    u0 = torch.rand((), generator=generator, dtype=torch.float64, device=log_weights.device)
    u = (u0 + torch.arange(K, dtype=torch.float64, device=log_weights.device)) / K
    return torch.searchsorted(cdf, u).clamp(max=K - 1)


def resample(result: SMCResult, generator: torch.Generator | None = None) -> Tensor:
    """An equally weighted particle set ``(K, *event)`` drawn from a weighted result."""
    idx = systematic_resample(result.log_weights, generator)
    return result.particles[idx]


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            "SMC samplers take one torch.Generator (resampling couples the particles, so"
            f" per-sample generators cannot make them batch-independent); got {type(generator)}"
        )


def _check_common(n_particles: int, ess_threshold: float) -> None:
    if int(n_particles) < 1:
        raise ValueError(f"n_particles must be >= 1; got {n_particles}")
    if not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold is a fraction of K in [0, 1]; got {ess_threshold}")


def _kernel(s, i: int) -> tuple[float, float, float]:
    """DDPM (DDIM ``eta = 1``) kernel ``t_i -> t_{i+1}``: ``(c_x, c_x0, std)`` in float64."""
    a, sg = float(s.alpha[i]), float(s.sigma[i])
    an, sn = float(s.alpha[i + 1]), float(s.sigma[i + 1])
    if sn == 0:
        return 0.0, an, 0.0
    e_mh = math.exp(-float(s.lam[i + 1] - s.lam[i]))
    k = sn * e_mh
    return k / sg, an - k * a / sg, sn * math.sqrt(max(0.0, 1 - e_mh**2))


class _Population:
    """Log-weights, ESS history and resampling of a particle population (all in float64)."""

    def __init__(self, K: int, threshold: float, generator, device) -> None:
        _check_generator(generator)
        self.logw = torch.zeros(K, dtype=torch.float64, device=device)
        self.threshold = threshold * K
        self.generator = generator
        self.ess: list[float] = []
        self.n_resampled = 0

    def add(self, increment: Tensor) -> None:
        self.logw = self.logw + torch.nan_to_num(increment.to(torch.float64), nan=-math.inf)
        if bool((self.logw == math.inf).any()):
            raise FloatingPointError(
                "a particle log-weight overflowed to +inf: the target is improper (e.g. a negative"
                " expert weight making the precision indefinite) or the potential is unbounded"
            )
        if not bool(torch.isfinite(self.logw).any()):
            raise FloatingPointError(
                "every particle weight is zero (log-weight -inf): the guidance or potential is"
                " too sharp for the particle count; raise n_particles or soften it"
            )

    def maybe_resample(self, *state: Tensor) -> tuple[bool, tuple[Tensor, ...]]:
        e = float(effective_sample_size(self.logw))
        self.ess.append(e)
        if e >= self.threshold:
            return False, state
        idx = systematic_resample(self.logw, self.generator)
        self.logw = torch.zeros_like(self.logw)
        self.n_resampled += 1
        return True, tuple(v[idx] for v in state)

    def result(self, particles: Tensor) -> SMCResult:
        lw = self.logw - torch.logsumexp(self.logw, 0)
        return SMCResult(
            particles, lw, torch.tensor(self.ess, dtype=torch.float64), self.n_resampled
        )


def _require_final_zero(s, name: str) -> None:
    if float(s.sigma[-1]) != 0:
        raise ValueError(
            f"{name} needs a grid that ends at t = 0 (final='denoise'): its last step turns the"
            " particles into clean samples and applies the final potential"
        )


# -- twisted SMC for linear-Gaussian inverse problems --------------------------------------------
def twisted_smc(
    denoiser,
    op: LinearOperator,
    y: Tensor,
    grid: Tensor,
    *,
    sigma_y: float,
    n_particles: int = 1000,
    c_twist: float = 1.0,
    ess_threshold: float = 0.5,
    x: Tensor | None = None,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
    cg_max_iter: int = 200,
) -> SMCResult:
    """Twisted diffusion sampler (TDS, Wu et al. 2023, Alg. 1) for ``y = A x0 + N(0, sigma_y^2)``.

    Twist ``p~_t(y | x_t) = N(y; A x0_hat(x_t), sigma_y^2 I + c r_t^2 A A^H)`` with
    ``r_t^2 = sigma^2 / (alpha^2 + sigma^2)`` (``1 - abar_t`` for VP); ``c_twist = 1`` inflates
    the variance as the note requires (``c = 0``, DPS-like, collapses the weights). Proposal: the
    DDPM kernel with the twisted score, ``x' ~ N(m + c_x0 (sigma^2/alpha) grad log p~_t, c^2)``;
    weight ``p(x'|x) p~_{t'}(y|x') / (q(x'|x) p~_t(y|x))``; the final step (to ``t = 0``) applies
    the true likelihood. Consistent as ``K -> inf`` (B1: mean error ~1-3 % at K = 4000).

    Parameters
    ----------
    y
        One measurement ``(1, *op.out_shape)`` (or ``op.out_shape``): the ``K`` particles target
        its posterior.
    x
        Optional start ``(K, *event)``; default ``process.prior_sample``.
    """
    _check_common(n_particles, ess_threshold)
    _check_generator(generator)
    if not isinstance(op, LinearOperator):
        raise TypeError(f"twisted_smc needs a linear operator; got {type(op).__name__}")
    if not float(sigma_y) > 0:
        raise ValueError(f"twisted_smc needs sigma_y > 0 (a proper likelihood); got {sigma_y}")
    if c_twist < 0:
        raise ValueError(f"c_twist must be >= 0; got {c_twist}")
    if tuple(y.shape) == tuple(op.out_shape):
        y = y[None]
    y = check_problem(op, y, name="twisted_smc")
    if y.shape[0] != 1:
        raise ValueError(
            f"twisted_smc targets one posterior: y must have batch 1; got {y.shape[0]}"
        )
    K = int(n_particles)
    if x is None:
        dt = y.real.dtype if y.is_complex() else y.dtype
        x = denoiser.process.prior_sample(
            (K, *op.in_shape), generator=generator, mu=_mu(cond, K), dtype=dt
        )
    if x.shape[0] != K:
        raise ValueError(f"x has {x.shape[0]} particles; n_particles is {K}")
    op.check_input(x)
    yk, model, s = prepare(denoiser, x, grid, cond, name="twisted_smc")
    _require_final_zero(s, "twisted_smc")
    y = match_batch(y, K).to(dtype=x.dtype if not op.out_complex else y.dtype)
    s2 = float(sigma_y) ** 2
    pop = _Population(K, ess_threshold, generator, x.device)

    def twist(v: Tensor, i: int):
        """log p~_t(y | x_t) up to a constant (per particle), its gradient, and x0_hat."""
        a, sg = float(s.alpha[i]), float(s.sigma[i])
        r2 = c_twist * sg**2 / (a**2 + sg**2)
        with torch.enable_grad():
            vv = v.detach().requires_grad_(True)
            d = model(vv, i)
            res = y - op.A(model.output(d))
            with torch.no_grad():
                u = cg(
                    lambda w: r2 * op.A(op.A_adjoint(w)) + s2 * w,
                    res,
                    max_iter=cg_max_iter,
                    tol=1e-10,
                )
            (g,) = torch.autograd.grad(d, vv, grad_outputs=op.A_adjoint(u))
        ell = -0.5 * inner(res.detach(), u)
        return ell.to(torch.float64), torch.nan_to_num(g), d.detach()

    ell, g, d = twist(yk, 0)
    pop.add(ell)  # the FK target at t_start is p(x_T) p~_T(y | x_T)
    n = len(s) - 1
    for i in steps(n, progress, "twisted_smc"):
        cx, cx0, std = _kernel(s, i)
        a, sg = float(s.alpha[i]), float(s.sigma[i])
        mean_p = c(cx, yk) * yk + c(cx0, yk) * d
        if std == 0:  # final step to t = 0: x0 = x0_hat, the true likelihood replaces the twist
            yk = mean_p
            res = y - op.A(model.output(yk))
            pop.add(-0.5 * inner(res, res).to(torch.float64) / s2 - ell)
            pop.ess.append(float(effective_sample_size(pop.logw)))
            report(
                callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=False, x=model.output(yk)
            )
            break
        shift = c(cx0 * sg**2 / a, yk) * g
        noise = noise_like(yk, generator)
        y_next = mean_p + shift + c(std, yk) * noise
        # log p(x'|x) - log q(x'|x) for equal variances: (|x' - m_q|^2 - |x' - m_p|^2) / (2 c^2)
        lpq = (
            inner(noise, noise) * std**2
            - inner(shift + c(std, yk) * noise, shift + c(std, yk) * noise)
        ) / (2 * std**2)
        ell_next, g_next, d_next = twist(y_next, i + 1)
        pop.add(lpq.to(torch.float64) + ell_next - ell)
        did, (yk, ell, g, d) = pop.maybe_resample(y_next, ell_next, g_next, d_next)
        report(callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=did, x=model.output(yk))
    return pop.result(model.output(yk))


def _mu(cond, K: int):
    from .._tensor import get_mu

    mu = get_mu(cond)
    return None if mu is None else match_batch(mu, K, name="mu")


# -- FK steering ---------------------------------------------------------------------------------
POTENTIALS = ("diff", "max", "add")


def fk_steering(
    denoiser,
    x: Tensor,
    grid: Tensor,
    reward_fn: Callable[[Tensor], Tensor],
    *,
    lmbda: float = 10.0,
    potential: str = "diff",
    ess_threshold: float = 0.5,
    resample_every: int = 1,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> SMCResult:
    """Feynman-Kac steering (Singhal et al. 2025) towards ``p(x0) exp(lmbda r(x0))``.

    Particles follow the unguided DDPM kernel; at each step the intermediate reward
    ``r_t = reward_fn(x0_hat(x_t))`` gives a potential ``G_t`` (log space):

    * ``diff``: ``lmbda (r_t - r_{t+1})`` (telescopes to ``lmbda r``);
    * ``max``: ``lmbda max_{s >= t} r_s``;
    * ``add``: ``lmbda sum_{s >= t} r_s``.

    The final step multiplies by ``exp(lmbda r(x0)) / prod_t G_t`` along each particle's
    ancestry, so the weighted particles target the tilted distribution exactly as ``K -> inf``
    whichever potential is used; the potential only shapes resampling. ``resample_every``: the
    steps at which resampling is considered (``i % resample_every == 0``).
    """
    if potential not in POTENTIALS:
        raise ValueError(f"unknown potential {potential!r}; choose one of {POTENTIALS}")
    _check_common(x.shape[0], ess_threshold)
    if int(resample_every) < 1:
        raise ValueError(f"resample_every must be >= 1; got {resample_every}")
    yk, model, s = prepare(denoiser, x, grid, cond, name="fk_steering")
    _require_final_zero(s, "fk_steering")
    K = x.shape[0]
    pop = _Population(K, ess_threshold, generator, x.device)
    zeros = torch.zeros(K, dtype=torch.float64, device=x.device)
    r_prev, r_max, r_sum, log_prod = zeros, torch.full_like(zeros, -math.inf), zeros, zeros

    def reward(v: Tensor) -> Tensor:
        r = torch.as_tensor(reward_fn(model.output(v))).to(torch.float64).reshape(-1)
        if r.shape != (K,):
            raise ValueError(
                f"reward_fn must return one value per particle ({K},); got {tuple(r.shape)}"
            )
        return r

    n = len(s) - 1
    for i in steps(n, progress, "fk_steering"):
        d = model(yk, i)
        cx, cx0, std = _kernel(s, i)
        if std == 0:
            yk = c(cx0, yk) * d
            pop.add(lmbda * reward(yk) - log_prod)
            pop.ess.append(float(effective_sample_size(pop.logw)))
            report(
                callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=False, x=model.output(yk)
            )
            break
        r = reward(d)
        if potential == "diff":
            logg = lmbda * (r - r_prev)
        elif potential == "max":
            r_max = torch.maximum(r_max, r)
            logg = lmbda * r_max
        else:
            r_sum = r_sum + r
            logg = lmbda * r_sum
        pop.add(logg)
        log_prod = log_prod + logg
        r_prev = r
        did = False
        if i % int(resample_every) == 0:
            did, (yk, d, r_prev, r_max, r_sum, log_prod) = pop.maybe_resample(
                yk, d, r_prev, r_max, r_sum, log_prod
            )
        else:
            pop.ess.append(float(effective_sample_size(pop.logw)))
        yk = c(cx, yk) * yk + c(cx0, yk) * d + c(std, yk) * noise_like(yk, generator)
        report(callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=did, x=model.output(yk))
    return pop.result(model.output(yk))


# -- FK correctors -------------------------------------------------------------------------------
Expert = tuple[Any, float]


def annealed_target(denoiser, beta: float) -> list[Expert]:
    """Target ``p^beta`` (annealing / temperature): one expert with weight ``beta``."""
    return [(denoiser, float(beta))]


def product_target(*denoisers) -> list[Expert]:
    """Product of experts ``p_1 p_2 ...``: each expert with weight 1."""
    if len(denoisers) < 2:
        raise ValueError("a product of experts needs at least two denoisers")
    return [(d, 1.0) for d in denoisers]


def cfg_target(denoiser, cond, scale: float, *, null_cond=None) -> list[Expert]:
    """Geometric CFG target ``p(x)^(1 - w) p(x | c)^w`` (what CFG only approximates)."""
    null = torch.zeros_like(cond) if null_cond is None else null_cond
    return [
        (with_condition(denoiser, null), 1.0 - float(scale)),
        (with_condition(denoiser, cond), float(scale)),
    ]


def fk_corrector(
    experts: Sequence[Expert],
    x: Tensor,
    grid: Tensor,
    *,
    ess_threshold: float = 0.5,
    cond: Any = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> SMCResult:
    """Feynman-Kac correctors (Skreta et al. 2025) for ``q_t ∝ prod_k p_{k,t}^{beta_k}``.

    The particles follow the reverse SDE whose score is ``S = sum_k beta_k s_k`` (``s_k`` from
    expert ``k``'s ``x0_hat``), discretised as a DDPM step from the combined clean estimate
    ``(x + sigma^2 S) / alpha``. Their density then misses the target by a Feynman-Kac factor,
    re-derived here from the Fokker-Planck equations of both::

        d log w = (g^2 / 2) (|S|^2 - sum_k beta_k |s_k|^2) dt'     (+ a particle-independent term)

    with ``g^2 = alpha^2 d(sigma^2/alpha^2)/dt`` the forward diffusion; annealing ``p^beta`` gives
    ``beta (beta - 1) g^2 |s|^2 / 2`` and a product of two experts ``g^2 <s_1, s_2>``, the forms of
    Skreta et al. ``int g^2 dt`` over a step is taken as ``alpha_t^2 (sigma~_t^2 - sigma~_{t'}^2)``
    (first order). Start: ``x`` should be drawn from ``q_T``; for mean-free processes with
    ``alpha(t_start) ~ 0`` that is ``N(0, sigma_T^2 / sum beta)``.

    The weights' variance grows with ``beta (beta - 1)`` times the log-SNR range crossed: for sharp
    annealing (``beta > 1``) start at a moderate ``t_start`` (with ``x ~ q_{t_start}``) and use
    many particles; resampling noise then dominates the error (checked against an independent
    reference implementation of the same weights).
    """
    experts = list(experts)
    if not experts:
        raise ValueError("fk_corrector needs at least one (denoiser, beta) expert")
    for e in experts:
        if not (isinstance(e, tuple) and len(e) == 2 and hasattr(e[0], "process")):
            raise TypeError(
                "experts are (denoiser, beta) pairs; build them with annealed_target,"
                " product_target or cfg_target"
            )
    _check_common(x.shape[0], ess_threshold)
    first = experts[0][0]
    yk, model, s = prepare(first, x, grid, cond, name="fk_corrector")
    _require_final_zero(s, "fk_corrector")
    models = [model] + [prepare(d, x, grid, cond, name="fk_corrector")[1] for d, _ in experts[1:]]
    betas = [float(b) for _, b in experts]
    K = x.shape[0]
    pop = _Population(K, ess_threshold, generator, x.device)
    n = len(s) - 1
    for i in steps(n, progress, "fk_corrector"):
        a, sg = float(s.alpha[i]), float(s.sigma[i])
        scores = [(c(a, yk) * m(yk, i) - yk) / c(sg**2, yk) for m in models]
        S = sum(b * sc for b, sc in zip(betas, scores, strict=True))
        sq = inner(S, S) - sum(b * inner(sc, sc) for b, sc in zip(betas, scores, strict=True))
        a_n, s_n = float(s.alpha[i + 1]), float(s.sigma[i + 1])
        g2dt = a**2 * ((sg / a) ** 2 - (s_n / a_n) ** 2)
        pop.add(0.5 * g2dt * sq.to(torch.float64))
        d = (yk + c(sg**2, yk) * S) / c(a, yk)
        cx, cx0, std = _kernel(s, i)
        if std == 0:
            yk = c(cx0, yk) * d
            pop.ess.append(float(effective_sample_size(pop.logw)))
            report(
                callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=False, x=model.output(yk)
            )
            break
        did, (yk, d) = pop.maybe_resample(yk, d)
        yk = c(cx, yk) * yk + c(cx0, yk) * d + c(std, yk) * noise_like(yk, generator)
        report(callback, i=i, t=float(s.t[i]), ess=pop.ess[-1], resampled=did, x=model.output(yk))
    return pop.result(model.output(yk))
