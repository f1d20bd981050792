"""Closed-form inverse problems: the oracles of the tests and benchmarks (notes/01 B1-B2).

``gaussian_toy``: Gaussian prior, linear ``A``, Gaussian noise, exact posterior (Kalman).
``gmm_toy``: Gaussian-mixture prior on a 2-D grid lifted to ``dim`` dims, exact mixture posterior.
Both draw everything from ``seed`` and return float64 tensors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ..oracles import (
    GaussianMixtureOracle,
    GaussianOracle,
    gmm_linear_posterior,
    linear_gaussian_posterior,
)
from .linear import Mask, Matrix
from .operators import LinearOperator

__all__ = [
    "AffineDenoiser",
    "DigitsPrior",
    "GMMToy",
    "GaussianToy",
    "KSpaceToy",
    "digits_gmm_prior",
    "digits_selection_psnrs",
    "gaussian_action_entropies",
    "gaussian_toy",
    "gmm_toy",
    "kspace_gaussian_toy",
    "kspace_posterior_sampler",
    "kspace_top1_agreement",
    "relative_moment_errors",
    "whitened_moment_errors",
]


class GaussianToy(NamedTuple):
    """A linear-Gaussian problem: ``y = A x + sigma_y n`` with ``x ~ prior``."""

    prior: GaussianOracle
    op: LinearOperator
    matrix: Tensor  # (m, d): the observed rows of A (for the Kalman posterior)
    x_true: Tensor  # (1, d)
    y: Tensor  # (1, *op.out_shape)
    sigma_y: float
    posterior: GaussianOracle


def _orthogonal(d: int, g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _observe(kind: str, dim: int, n_obs: int, g: torch.Generator):
    if not 0 < n_obs <= dim:
        raise ValueError(f"need 0 < n_obs <= dim; got n_obs={n_obs}, dim={dim}")
    if kind == "generic":
        A = torch.randn(n_obs, dim, generator=g, dtype=torch.float64) / math.sqrt(dim)
        return Matrix(A), A, None
    if kind == "mask":
        idx = torch.randperm(dim, generator=g)[:n_obs].sort().values
        mask = torch.zeros(dim, dtype=torch.float64)
        mask[idx] = 1.0
        return Mask(mask), torch.eye(dim, dtype=torch.float64)[idx], idx
    raise ValueError(f"unknown toy kind {kind!r}; choose 'generic' or 'mask'")


def _measure(op, A, idx, x_true, sigma_y, g):
    if idx is None:
        y = op.A(x_true) + sigma_y * torch.randn(1, A.shape[0], generator=g, dtype=torch.float64)
        return y, y[0]
    noise = sigma_y * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    y = op.A(x_true + noise)  # zero-filled; noise only where observed
    return y, y[0, idx]


def gaussian_toy(
    *,
    dim: int = 16,
    n_obs: int = 6,
    sigma_y: float = 0.1,
    kind: str = "generic",
    eig_range: tuple[float, float] = (0.05, 2.0),
    seed: int = 0,
) -> GaussianToy:
    """notes/01 B1: ``N(0, Sigma)`` with eigenvalues log-spaced in ``eig_range`` and a random
    eigenbasis; ``A`` generic (``m x d`` Gaussian / sqrt(d)) or a mask of ``n_obs`` coordinates."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = eig_range
    lam = torch.logspace(math.log10(lo), math.log10(hi), dim, dtype=torch.float64)
    U = _orthogonal(dim, g)
    cov = (U * lam) @ U.mT
    cov = 0.5 * (cov + cov.mT)
    prior = GaussianOracle(torch.zeros(dim, dtype=torch.float64), cov)
    op, A, idx = _observe(kind, dim, n_obs, g)
    x_true = prior.sample(1, generator=g)
    y, y_obs = _measure(op, A, idx, x_true, sigma_y, g)
    post = linear_gaussian_posterior(prior.mean, prior.cov, A, sigma_y, y_obs)
    return GaussianToy(prior, op, A, x_true, y, float(sigma_y), post)


class GMMToy(NamedTuple):
    """A linear inverse problem with a Gaussian-mixture prior and its exact mixture posterior."""

    prior: GaussianMixtureOracle
    op: LinearOperator
    matrix: Tensor
    x_true: Tensor
    y: Tensor
    sigma_y: float
    posterior: GaussianMixtureOracle


def gmm_toy(
    *,
    dim: int = 8,
    n_obs: int = 1,
    sigma_y: float = 0.3,
    grid: int = 5,
    spacing: float = 1.0,
    std: float = 0.15,
    kind: str = "generic",
    seed: int = 0,
) -> GMMToy:
    """notes/01 B2: ``grid x grid`` equal-weight isotropic components on a 2-D lattice (spacing
    ``spacing``, std ``std``) mapped into ``dim`` dims by a random orthonormal ``(dim, 2)`` map.
    Few, noisy observations leave several modes with sizeable posterior weight."""
    g = torch.Generator().manual_seed(seed)
    u = (torch.arange(grid, dtype=torch.float64) - (grid - 1) / 2) * spacing
    pts = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    Q = _orthogonal(dim, g)[:, :2]
    means = pts @ Q.mT
    K = means.shape[0]
    covs = torch.full((K, dim), std**2, dtype=torch.float64)
    prior = GaussianMixtureOracle(torch.ones(K, dtype=torch.float64), means, covs)
    op, A, idx = _observe(kind, dim, n_obs, g)
    x_true = prior.sample(1, generator=g)
    y, y_obs = _measure(op, A, idx, x_true, sigma_y, g)
    post = gmm_linear_posterior(prior, A, sigma_y, y_obs)
    return GMMToy(prior, op, A, x_true, y, float(sigma_y), post)


def relative_moment_errors(
    samples: Tensor, mean: Tensor, cov: Tensor, log_weights: Tensor | None = None
) -> tuple[float, float]:
    """``(||m_hat - m|| / ||m||, ||C_hat - C||_F / ||C||_F)`` of (weighted) samples ``(N, d)``."""
    x = samples.reshape(samples.shape[0], -1).to(torch.float64)
    if log_weights is None:
        w = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    else:
        w = torch.softmax(log_weights.to(torch.float64), 0)
    m_hat = w @ x
    xc = x - m_hat
    c_hat = (xc * w[:, None]).mT @ xc
    em = float(torch.linalg.norm(m_hat - mean) / torch.linalg.norm(mean))
    ec = float(torch.linalg.norm(c_hat - cov) / torch.linalg.norm(cov))
    return em, ec


class KSpaceToy(NamedTuple):
    """A stationary (circulant) Gaussian image prior measured in centred k-space, line by line."""

    prior: GaussianOracle
    full_op: LinearOperator  # real (H, W) image -> complex (H, W) centred k-space
    actions: Tensor  # (W, H, W) bool: k-space columns
    conjugate: Tensor  # (W,) index of the conjugate column (real images)
    spectrum: Tensor  # (H, W) power spectrum in centred k-space order


def kspace_gaussian_toy(
    size: int = 16, *, roughness: float = 1.0, decay: float = 1.0, seed: int = 0
) -> KSpaceToy:
    """notes/01 ADS toy: ``x = F^H (sqrt(P) . F w)`` with a Hermitian-symmetric random power
    spectrum ``P(k) = exp(roughness * u(k)) / (1 + |k|^2)^(decay/2)`` (``u`` uniform on ``[0, 1]``),
    so the exact most informative k-space column is known but not trivial."""
    from .combine import RealToComplex
    from .fourier import FFTMask, fft_c, ifft_c

    g = torch.Generator().manual_seed(seed)
    H = W = int(size)
    u = torch.rand(H, W, generator=g, dtype=torch.float64)
    u = 0.5 * (u + torch.roll(torch.flip(u, (0, 1)), (1, 1), (0, 1)))  # u(k) = u(-k), centred
    k = torch.arange(H, dtype=torch.float64) - H // 2
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    P = torch.exp(roughness * u) / (1 + k2) ** (decay / 2)
    basis = torch.eye(H * W, dtype=torch.float64).reshape(H * W, H, W)
    cols = ifft_c(P.sqrt() * fft_c(basis.to(torch.complex128))).real  # x = C^(1/2) e_i
    half = cols.reshape(H * W, H * W)
    cov = half.mT @ half
    prior = GaussianOracle(
        torch.zeros(H * W, dtype=torch.float64), 0.5 * (cov + cov.mT), event_shape=(H, W)
    )
    full_op = FFTMask(torch.ones(H, W)) @ RealToComplex((H, W))
    from .ads import line_actions

    j = torch.arange(W)
    return KSpaceToy(prior, full_op, line_actions((H, W), dim=-1), (W - j) % W, P)


def gaussian_action_entropies(
    prior: GaussianOracle,
    full_op: LinearOperator,
    actions: Tensor,
    mask: Tensor,
    *,
    sigma: float,
) -> Tensor:
    """Exact ``H_a = 1/2 log det(Cov[A_a x | acquired] + sigma^2 I)`` (up to a shared constant) for
    every action, given noiseless measurements on ``mask`` (the ADS target under a Gaussian prior).
    """
    M = full_op.dense()  # (m_real, d), real rows of the full operator
    kind = 2 if full_op.out_complex else 1

    def rows(sel: Tensor) -> Tensor:
        s = sel.reshape(-1)
        if kind == 2:
            s = torch.stack([s, s], -1).reshape(-1)  # view_as_real order: (re, im) per entry
        return M[s]

    C = prior.cov
    if bool(mask.any()):
        R = rows(mask.to(torch.bool))
        S = R @ C @ R.mT
        K = torch.linalg.lstsq(S, R @ C).solution.mT
        C = C - K @ R @ C
    out = []
    for a in range(actions.shape[0]):
        R = rows(actions[a].to(torch.bool))
        S = R @ C @ R.mT + sigma**2 * torch.eye(R.shape[0], dtype=torch.float64)
        out.append(0.5 * torch.logdet(S))
    return torch.stack(out)


class DigitsPrior(NamedTuple):
    """A Gaussian-mixture prior fitted to scikit-learn's 8x8 digits, with a held-out split."""

    prior: GaussianMixtureOracle  # event shape (8, 8), pixels scaled to [-1, 1]
    train: Tensor  # (n_train, 8, 8)
    test: Tensor  # (n_test, 8, 8)


def digits_gmm_prior(
    *, n_components: int = 20, n_test: int = 200, reg_covar: float = 1e-2, seed: int = 0
) -> DigitsPrior:
    """Fit ``n_components`` full-covariance Gaussians (scikit-learn EM) to the digits images.

    An honest exact-denoiser prior for the digits tasks: the mixture's posterior mean is the exact
    Tweedie denoiser of *this* prior (not of the empirical data). Pixels ``v in [0, 16]`` map to
    ``v / 8 - 1``; the last ``n_test`` images of a seeded permutation are held out.
    """
    from sklearn.datasets import load_digits
    from sklearn.mixture import GaussianMixture

    X = torch.as_tensor(load_digits().data, dtype=torch.float64) / 8.0 - 1.0
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(X.shape[0], generator=g)
    train, test = X[perm[:-n_test]], X[perm[-n_test:]]
    gm = GaussianMixture(
        n_components, covariance_type="full", reg_covar=reg_covar, random_state=seed, max_iter=200
    ).fit(train.numpy())
    prior = GaussianMixtureOracle(
        torch.as_tensor(gm.weights_),
        torch.as_tensor(gm.means_),
        torch.as_tensor(gm.covariances_),
        event_shape=(8, 8),
    )
    return DigitsPrior(prior, train.reshape(-1, 8, 8), test.reshape(-1, 8, 8))


def whitened_moment_errors(
    samples: Tensor, mean: Tensor, cov: Tensor, log_weights: Tensor | None = None
) -> tuple[float, float]:
    """Errors in posterior-std units: ``(max_i |m_hat_i - m_i| / sqrt(C_ii),
    ||C^-1/2 C_hat C^-1/2 - I||_F / sqrt(d))``; Monte Carlo floors ~``3/sqrt(N)`` and
    ``sqrt((d + 1)/N)``. Scale-free, so small toys need no tolerance tuning."""
    x = samples.reshape(samples.shape[0], -1).to(torch.float64)
    w = (
        torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
        if log_weights is None
        else torch.softmax(log_weights.to(torch.float64), 0)
    )
    m_hat = w @ x
    xc = x - m_hat
    c_hat = (xc * w[:, None]).mT @ xc
    em = float(((m_hat - mean).abs() / torch.diagonal(cov).sqrt()).max())
    lam, U = torch.linalg.eigh(cov)
    W = (U / lam.sqrt()) @ U.mT
    d = cov.shape[0]
    ec = float(torch.linalg.norm(W @ c_hat @ W - torch.eye(d, dtype=torch.float64)) / math.sqrt(d))
    return em, ec


class AffineDenoiser:
    """Speed wrapper for denoisers that are affine in ``x`` at each time (Gaussian oracles).

    For a batch sharing one time, ``D(x) = b + x M`` is probed once (``d + 1`` evaluations) and
    applied as a matrix product, differentiable in ``x``; mixed times fall back to ``D``. Exact for
    Gaussian priors (float64 round-off); wrong for anything non-affine (mixtures, networks).
    """

    def __init__(self, denoiser) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self._cache: dict[tuple[float, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _map(self, t: float, shape: tuple[int, ...], dtype: torch.dtype, cond):
        key = (t, dtype)
        if key not in self._cache:
            d = math.prod(shape)
            probe = torch.cat([torch.zeros(1, d, dtype=dtype), torch.eye(d, dtype=dtype)])
            tt = torch.full((d + 1,), t, dtype=dtype)
            with torch.no_grad():
                out = self.denoiser(probe.reshape(d + 1, *shape), tt, cond).reshape(d + 1, d)
            self._cache = (
                {key: (out[0], out[1:] - out[0])}
                if len(self._cache) > 4
                else {
                    **self._cache,
                    key: (out[0], out[1:] - out[0]),
                }
            )
        return self._cache[key]

    def __call__(self, x: Tensor, t, cond=None) -> Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1)
        if cond is not None or not bool((tt == tt[0]).all()):
            return self.denoiser(x, t, cond)
        b, M = self._map(float(tt[0]), tuple(x.shape[1:]), x.dtype, cond)
        return (b + x.reshape(x.shape[0], -1) @ M).reshape(x.shape)


def kspace_posterior_sampler(toy: KSpaceToy, mask: Tensor):
    """Exact posterior sampler ``(n, generator) -> (n, H, W)`` of the k-space toy given noiseless
    measurements on ``mask (H, W)`` (Gaussian conditioning, Cholesky)."""
    M = toy.full_op.dense()
    s = mask.reshape(-1).to(torch.bool)
    R = M[torch.stack([s, s], -1).reshape(-1)]  # real and imaginary rows of the acquired entries
    C = toy.prior.cov
    if bool(s.any()):
        K = torch.linalg.lstsq(R @ C @ R.mT, R @ C).solution.mT
        C = C - K @ R @ C
    d = C.shape[0]
    L = torch.linalg.cholesky(0.5 * (C + C.mT) + 1e-10 * torch.eye(d, dtype=torch.float64))
    return lambda n, g: (torch.randn(n, d, generator=g, dtype=torch.float64) @ L.mT).reshape(
        n, *toy.prior.event_shape
    )


def kspace_top1_agreement(
    *,
    seeds=range(4),
    size: int = 16,
    n_particles: int = 16,
    n_trials: int = 60,
    sigma: float = 1.0,
) -> list[float]:
    """ADS's estimator on the k-space toy (notes/01): per toy seed, the fraction of trials in which
    the argmax of the ``n_particles``-particle GMM entropy (:func:`~.ads.action_scores`, exact
    posterior samples given the centre column) is the exact most informative column of
    :func:`gaussian_action_entropies` or its conjugate."""
    from .ads import action_scores

    out = []
    for seed in seeds:
        toy = kspace_gaussian_toy(size, seed=seed)
        centre = size // 2
        mask = toy.actions[centre]
        exact = gaussian_action_entropies(toy.prior, toy.full_op, toy.actions, mask, sigma=sigma)
        exact[[centre, int(toy.conjugate[centre])]] = -math.inf
        best = int(exact.argmax())
        ok = {best, int(toy.conjugate[best])}
        sample = kspace_posterior_sampler(toy, mask)
        g = torch.Generator().manual_seed(seed)
        hits = 0
        for _ in range(n_trials):
            sc = action_scores(toy.full_op.A(sample(n_particles, g)), toy.actions, sigma=sigma)
            sc[[centre, int(toy.conjugate[centre])]] = -math.inf
            hits += int(sc.argmax()) in ok
        out.append(hits / n_trials)
    return out


def digits_selection_psnrs(
    *,
    n_targets: int = 32,
    budget: int = 8,
    n_particles: int = 16,
    n_steps: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """ADS pixel selection on held-out digits against fixed and random masks at equal budget.

    Mean PSNR (dB, pixels in [-1, 1], peak-to-peak 2) of the exact posterior mean of
    :func:`digits_gmm_prior`'s 20-component mixture given each strategy's final mask: ADS
    (``entropy`` and ``variance``; DPS-guided DDIM particles on ``VPDiscrete``, window
    ``(0, 0.7)``, sigma 1), the ``budget`` highest-variance training pixels (``fixed_variance``)
    and random masks (mean of three draws). One exact reconstruction for every mask isolates the
    *selection*; ``ads_own`` is ADS's own particle-mean reconstruction.
    """
    from ..oracles import gmm_linear_posterior
    from ..processes import VPDiscrete
    from ..solvers import make_grid
    from .ads import ads, pixel_actions
    from .linear import Identity

    dp = digits_gmm_prior(n_components=20, seed=seed)
    truth = dp.test[:n_targets]
    eye = torch.eye(64, dtype=torch.float64)

    def psnr(masks: Tensor) -> float:
        vals = []
        for b in range(n_targets):
            idx = masks[b].reshape(-1).nonzero().squeeze(1)
            post = gmm_linear_posterior(dp.prior, eye[idx], 1e-2, truth[b].reshape(-1)[idx])
            rec = (post.weights @ post.means).reshape(8, 8)
            vals.append(10 * torch.log10(4 / ((rec - truth[b]) ** 2).mean()))
        return float(torch.stack(vals).mean())

    proc = VPDiscrete()
    D = dp.prior.denoiser(proc)
    grid = make_grid(proc, n_steps)
    res = {}
    for strategy in ("entropy", "variance"):
        r = ads(
            D,
            Identity((8, 8)),
            truth,
            pixel_actions((8, 8)),
            grid,
            budget=budget,
            n_particles=n_particles,
            window=(0.0, 0.7),
            strategy=strategy,
            sigma=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
        res[f"ads_{strategy}"] = psnr(r.mask)
        if strategy == "entropy":
            err = ((r.reconstruction - truth) ** 2).mean((1, 2))
            res["ads_own"] = float((10 * torch.log10(4 / err)).mean())
    top = dp.train.reshape(-1, 64).var(0).argsort(descending=True)[:budget]
    fixed = torch.zeros(n_targets, 64, dtype=torch.bool)
    fixed[:, top] = True
    res["fixed_variance"] = psnr(fixed.reshape(-1, 8, 8))
    rand = []
    for k in range(3):
        m = torch.zeros(n_targets, 64, dtype=torch.bool)
        m[:, torch.randperm(64, generator=torch.Generator().manual_seed(100 + k))[:budget]] = True
        rand.append(psnr(m.reshape(-1, 8, 8)))
    res["random"] = sum(rand) / 3
    return res
