"""Reconstruction (``domains/mri/recon.py``) on tiny untrained priors: every method runs, data
consistency holds where a method enforces it, the one normalisation makes every method
scale-equivariant, and bad input fails clearly."""

from __future__ import annotations

import pytest
import torch
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri import birdcage_maps, fft2c, make_mask
from sciffusion.domains.mri.recon import METHODS, reconstruct

N = 16


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    img = simulate_phantoms(2, N, generator=g).image.to(torch.complex64)
    mask = make_mask("random", N, acceleration=4, center_fraction=0.125, generator=g).mask
    return fft2c(img), mask, img


@pytest.fixture(scope="module")
def priors(tiny_prior):
    return {k: tiny_prior(k) for k in ("uncond", "cond", "irsde")}


def _residual(rec, kspace, mask) -> float:
    m = mask.to(torch.float32)
    r = (fft2c(rec) - kspace) * m
    return float(r.abs().norm() / (kspace * m).abs().norm())


@pytest.mark.filterwarnings("ignore:smc. the particle weights degenerated")  # 3 particles
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs(method, data, priors):
    k, mask, _ = data
    spec = METHODS[method]
    r = reconstruct(
        k,
        mask,
        method=method,
        prior=priors.get(spec.prior),
        sigma=0.01,
        nfe=3,
        n_samples=2,
        options={"n_particles": 3} if method == "smc" else None,
        generator=torch.Generator().manual_seed(0),
    )
    S = 1 if spec.prior is None else (3 if method == "smc" else 2)
    assert r.mean.shape == (2, N, N) and r.mean.is_complex()
    assert r.std.shape == (2, N, N) and r.samples.shape == (2, S, N, N)
    assert torch.isfinite(torch.view_as_real(r.samples)).all()
    assert r.seconds >= 0
    if spec.prior is None:
        assert r.nfe == 0
    elif method not in ("red_diff", "smc"):
        assert r.nfe == 3  # one batched network call per step
    if S == 1:
        assert float(r.std.abs().max()) == 0.0


def test_zero_filled_is_adjoint(data):
    k, mask, _ = data
    r = reconstruct(k, mask, method="zero_filled")
    from sciffusion.domains.mri import ifft2c

    expect = ifft2c(k * mask.to(torch.float32))
    assert torch.allclose(r.mean, expect, atol=1e-6)


@pytest.mark.parametrize("method", ["hard", "cond", "irsde"])
def test_hard_dc_matches_the_data(method, data, priors):
    """Noise-free hard DC in the last step: the mean reproduces the measured columns."""
    k, mask, _ = data
    prior = priors[METHODS[method].prior]
    opts = None if method == "hard" else {"dc": "hard"}
    r = reconstruct(
        k,
        mask,
        method=method,
        prior=prior,
        nfe=4,
        n_samples=2,
        options=opts,
        generator=torch.Generator().manual_seed(1),
    )
    assert _residual(r.mean, k, mask) < 1e-5
    assert float(r.std.max()) > 0  # two distinct samples


def test_sense_hard_dc(priors):
    g = torch.Generator().manual_seed(5)
    img = simulate_phantoms(1, N, generator=g).image.to(torch.complex64)
    maps = birdcage_maps(4, (N, N)).to(torch.complex64)
    k = fft2c(maps[None] * img[:, None])
    mask = make_mask("equispaced_fraction", N, acceleration=4, center_fraction=0.125, offset=0).mask
    r = reconstruct(
        k,
        mask,
        method="hard",
        prior=priors["uncond"],
        maps=maps,
        nfe=3,
        n_samples=1,
        generator=torch.Generator().manual_seed(0),
    )
    m = mask.to(torch.float32)
    res = (fft2c(maps[None] * r.mean[:, None]) - k) * m
    # SENSE hard DC is a CG projection: consistent to the CG tolerance
    assert float(res.abs().norm() / (k * m).abs().norm()) < 1e-3


@pytest.mark.parametrize("method", ["zero_filled", "tv", "hard", "prox", "cond", "irsde"])
def test_scale_equivariance(method, data, priors):
    """The intensity normalisation is the one place scale enters: x(c y) = c x(y)."""
    k, mask, _ = data
    prior = priors.get(METHODS[method].prior)
    kw = dict(method=method, prior=prior, nfe=3, n_samples=2)
    a = reconstruct(k, mask, sigma=0.01, generator=torch.Generator().manual_seed(2), **kw)
    b = reconstruct(1e-4 * k, mask, sigma=1e-6, generator=torch.Generator().manual_seed(2), **kw)
    assert torch.allclose(b.mean, 1e-4 * a.mean, rtol=1e-3, atol=1e-4 * 1e-4 * a.mean.abs().max())
    assert torch.allclose(b.scale, 1e-4 * a.scale, rtol=1e-5)


def test_unsampled_entries_ignored(data, priors):
    k, mask, _ = data
    junk = k.clone()
    junk[..., ~mask] = complex(float("nan"), 0.0)
    a = reconstruct(k, mask, method="zero_filled")
    b = reconstruct(junk, mask, method="zero_filled")
    assert torch.allclose(a.mean, b.mean)


def test_bad_input_is_explained(data, priors):
    k, mask, _ = data
    with pytest.raises(ValueError, match="unknown method"):
        reconstruct(k, mask, method="nope")
    with pytest.raises(ValueError, match="complex"):
        reconstruct(k.real, mask, method="zero_filled")
    with pytest.raises(ValueError, match="needs coil maps"):
        reconstruct(k[:, None].expand(2, 3, N, N), mask, method="zero_filled")
    with pytest.raises(ValueError):
        reconstruct(k, mask[:-1], method="zero_filled")  # mask width != k-space width
    bad = k.clone()
    bad[0, 0, mask.nonzero()[0, 0]] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        reconstruct(bad, mask, method="zero_filled")
    with pytest.raises(ValueError, match="needs a 'cond' prior"):
        reconstruct(k, mask, method="cond", prior=priors["uncond"])
    with pytest.raises(ValueError, match="takes options"):
        reconstruct(k, mask, method="hard", prior=priors["uncond"], options={"zeta": 1.0})
    with pytest.raises(ValueError, match="sigma"):
        reconstruct(k, mask, method="hard", prior=priors["uncond"], sigma=float("nan"))
    maps = birdcage_maps(3, (N, N)).to(torch.complex64)
    kc = fft2c(maps[None] * k[:, None])
    with pytest.raises(ValueError):
        reconstruct(kc, mask, method="zero_filled", maps=birdcage_maps(2, (N, N)))


@pytest.mark.parametrize("solver", ["mr_sampler", "ir_sde_em", "dpmpp_2m"])
def test_irsde_samplers(solver, data, priors):
    k, mask, _ = data
    r = reconstruct(
        k,
        mask,
        method="irsde",
        prior=priors["irsde"],
        solver=solver,
        nfe=4,
        sigma=0.01,
        n_samples=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert r.nfe == 4 and torch.isfinite(torch.view_as_real(r.mean)).all()
    with pytest.raises(ValueError, match="irsde prior only"):
        reconstruct(
            k,
            mask,
            method="cond",
            prior=priors["cond"],
            solver=solver if solver != "dpmpp_2m" else "mr_sampler",
        )


def test_hard_dc_on_noisy_multicoil_data_is_refused():
    """With several coils hard DC is the least-squares SENSE solution (prior discarded, noise
    amplified: -9 dB PSNR in the benchmark before this check)."""
    from sciffusion.domains.mri import reconstruct

    k = torch.zeros(1, 4, 16, 16, dtype=torch.complex64)
    maps = torch.ones(4, 16, 16, dtype=torch.complex64) / 2
    mask = torch.zeros(16, dtype=torch.bool)
    mask[6:10] = True
    with pytest.raises(ValueError, match=r"needs noiseless data.*method='prox'"):
        reconstruct(k, mask, method="hard", maps=maps, sigma=0.01)


@pytest.mark.parametrize("degenerate", [True, False])
def test_smc_warns_when_its_weights_collapse(degenerate, data, priors, monkeypatch):
    """ESS ~ 1 at most steps means one ancestor for all particles: the std is then no posterior
    spread, and the user is told so (and not told so when the weights are healthy)."""
    import warnings

    import sciffusion.inverse.smc as smc

    real = smc.twisted_smc

    def fake(*args, **kwargs):
        res = real(*args, **kwargs)
        K = kwargs["n_particles"]
        ess = torch.full_like(res.ess, 1.0 if degenerate else 0.6 * K)
        return res._replace(ess=ess)

    monkeypatch.setattr(smc, "twisted_smc", fake)
    k, mask, _ = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reconstruct(
            k[:1],
            mask,
            method="smc",
            prior=priors["uncond"],
            sigma=0.01,
            nfe=3,
            options={"n_particles": 4},
            generator=torch.Generator().manual_seed(0),
        )
    hits = [w for w in caught if "weights degenerated" in str(w.message)]
    assert len(hits) == (1 if degenerate else 0)
    if degenerate:
        assert "n_particles" in str(hits[0].message) and "1.00 of 4" in str(hits[0].message)
