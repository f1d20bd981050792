"""DiffusionModule: loss = w(t) |D - x0|^2 for every prediction and weighting, time sampling,
conditioning dropout, EMA warm-up, immiscible assignment, masks, MDLM, one step per data kind
followed by sampling, a run that learns an exact Gaussian denoiser, fit/resume."""

from __future__ import annotations

import itertools
import math

import pytest
import pytorch_lightning as pl
import sciffusion as sf
import torch
from sciffusion import solvers
from sciffusion.complex import from_channels, to_channels
from sciffusion.denoiser import native_weight
from sciffusion.nets import MLP, Transformer, UNet1D, UNet2D
from sciffusion.oracles import GaussianOracle
from sciffusion.training import (
    DiffusionModule,
    drop_condition,
    ema_decay_at,
    fit,
    immiscible_assign,
    loss_weight,
    make_loader,
    native_target,
    remove_mean,
    sample_time,
    x0_weight,
)
from scipy import stats

PREDICTIONS = ("eps", "x0", "v", "score", "velocity", "edm")
WEIGHTINGS = ("uniform", "snr", "min-snr", "edm")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets train fastest on one thread (and do not fight other test processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _step(module: DiffusionModule, batch, opt: torch.optim.Optimizer) -> float:
    loss = module.loss(batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    module.update_ema()
    return loss.item()


# ------------------------------------------------------------------------- targets and weights
PROCESSES = {
    "vp-linear": sf.VPLinear(),
    "vp-cosine": sf.VPCosine(),
    "ve": sf.VE(sigma_max=20.0),
    "linear": sf.LinearInterpolant(),
    "mean-reverting": sf.MeanReverting(max_sigma=0.5),
}


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("pname", sorted(PROCESSES))
def test_native_target_is_the_prediction_of_the_true_x0(prediction, pname, gen):
    """Converting the native target back to x0 (the denoiser's own conversion) gives x0 exactly."""
    process = PROCESSES[pname]
    x0 = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    mu = torch.randn(64, 3, generator=gen, dtype=torch.float64) if process.has_mean else None
    t = torch.empty(64, dtype=torch.float64).uniform_(0.01, 0.98, generator=gen)
    xt = process.marginal(x0, t, noise, mu)
    target = native_target(prediction, x0, noise, t, process, mu=mu, sigma_data=0.7)
    den = sf.Denoiser(torch.nn.Identity(), process, prediction, sigma_data=0.7)
    torch.testing.assert_close(den.output_to_x0(target, xt, t, mu), x0, rtol=1e-9, atol=1e-9)


def _loss_case(pname: str, prediction: str, weighting: str):
    process = PROCESSES[pname]
    if process.has_mean:
        net = UNet1D(2, down_dims=(8,), n_groups=4, emb_dim=8, cond_channels=2).double()
    else:
        net = MLP(8, hidden=16, depth=1, emb_dim=8).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=_gen(len(p.shape))))
    module = DiffusionModule(
        net,
        process,
        prediction=prediction,
        weighting=weighting,
        sigma_data=0.8,
        t_max=min(process.t_max, 0.99),
        ema_decay=None,
    )
    g = _gen(5)
    batch = {"x0": torch.randn(32, 2, 4, generator=g, dtype=torch.float64)}
    if process.has_mean:
        batch["mu"] = torch.randn(32, 2, 4, generator=g, dtype=torch.float64)
    return module, batch


@pytest.mark.parametrize(
    ("pname", "prediction", "weighting"),
    [
        *itertools.product(["vp-cosine", "linear"], PREDICTIONS, WEIGHTINGS),
        *itertools.product(["vp-linear", "ve", "mean-reverting"], PREDICTIONS, ["uniform"]),
        ("ve", "edm", "edm"),
        ("vp-linear", "v", "min-snr"),
        ("mean-reverting", "eps", "snr"),
    ],
)
def test_loss_equals_weighted_x0_error(pname, prediction, weighting):
    """The loss computed in native space equals mean_b w(t_b) |D(x_t) - x0|^2 (x0 space)."""
    module, batch = _loss_case(pname, prediction, weighting)
    loss = module.loss(batch, generator=_gen(11))
    # replay the same draws: time, dropout, noise
    g = _gen(11)
    x0, mu = batch["x0"], batch.get("mu")
    t = module.draw_time(x0.shape[0], g)
    drop_condition(None, 0.0, g, x0.shape[0])
    noise = module.draw_noise(x0, None, g)
    xt = module.process.marginal(x0, t, noise, mu)
    x0_hat = module.denoiser(ema=False)(xt, t, mu)
    w = x0_weight(weighting, prediction, module.process, t, sigma_data=0.8)
    expected = (w * ((x0_hat - x0) ** 2).mean(dim=(1, 2))).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-8, atol=0)


def test_weighting_identities():
    """eps 'uniform' = x0-space SNR; min-SNR caps it at gamma; EDM weight = 1 / c_out^2 (EDM
    prediction is uniform in its native space); v (VP) = SNR + 1."""
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    vp, ve = sf.VPLinear(), sf.VE()
    snr = (vp.alpha(t) / vp.sigma(t)) ** 2
    torch.testing.assert_close(x0_weight("uniform", "eps", vp, t), snr)
    torch.testing.assert_close(x0_weight("snr", "x0", vp, t), snr)
    torch.testing.assert_close(x0_weight("min-snr", "x0", vp, t), snr.clamp(max=5.0))
    torch.testing.assert_close(x0_weight("uniform", "v", vp, t), snr + 1)
    torch.testing.assert_close(loss_weight("min-snr", "eps", vp, t), snr.clamp(max=5.0) / snr)
    torch.testing.assert_close(loss_weight("min-snr", "v", vp, t), snr.clamp(max=5.0) / (snr + 1))
    s = ve.sigma(t)  # Karras et al. 2022, Eq. 8: lambda(sigma) = (s^2 + sd^2) / (s sd)^2
    sd = 0.5
    lam = (s**2 + sd**2) / (s * sd) ** 2
    torch.testing.assert_close(x0_weight("edm", "x0", ve, t, sigma_data=sd), lam)
    torch.testing.assert_close(native_weight("edm", ve, t, sd), lam)
    torch.testing.assert_close(loss_weight("edm", "edm", ve, t, sigma_data=sd), torch.ones_like(t))
    # the eps network's min-SNR factor stays finite at alpha = 0 (flow end, t = 1)
    fl = sf.LinearInterpolant()
    assert float(loss_weight("min-snr", "eps", fl, torch.tensor([1.0]))) == 1.0


# ------------------------------------------------------------------------- time sampling
def test_time_samplings_follow_their_laws():
    n = 20_000
    ve, fl = sf.VE(sigma_min=1e-4, sigma_max=1e3), sf.LinearInterpolant()
    t = sample_time("lognormal", n, ve, generator=_gen(1), t_eps=1e-7, t_max=1.0)
    log_s = torch.log(ve.sigma(t))  # EDM: ln sigma ~ N(-1.2, 1.2^2)
    assert abs(float(log_s.mean()) + 1.2) < 0.03 and abs(float(log_s.std()) - 1.2) < 0.03
    t = sample_time("logit-normal", n, fl, generator=_gen(2), t_eps=0.0, t_max=1.0)
    z = torch.logit(t)
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1.0) < 0.03
    t = sample_time("uniform", n, fl, generator=_gen(3), t_eps=0.1, t_max=0.6)
    assert stats.kstest(((t - 0.1) / 0.5).numpy(), "uniform").pvalue > 1e-3
    t = sample_time("stratified", 64, fl, generator=_gen(4), t_eps=0.0, t_max=1.0)
    assert torch.equal(torch.sort(torch.floor(t * 64)).values, torch.arange(64.0, dtype=t.dtype))
    with pytest.raises(ValueError, match="unknown time sampling 'beta'"):
        sample_time("beta", 3, fl, generator=None, t_eps=0.0, t_max=1.0)


# ------------------------------------------------------------------------- conditioning dropout
def test_condition_dropout_rate_and_zeros():
    B, p = 20_000, 0.15
    cond = torch.randn(B, 3, generator=_gen(0)) + 5.0
    out, dropped = drop_condition(cond, p, _gen(1), B)
    rate = float(dropped.double().mean())
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / B)
    assert torch.equal(out[dropped], torch.zeros_like(out[dropped]))
    assert torch.equal(out[~dropped], cond[~dropped])
    mask = torch.ones(B, 4, dtype=torch.bool)
    out, dropped = drop_condition({"vector": cond, "mask": mask}, p, _gen(1), B)
    assert out["mask"] is mask and torch.equal(
        out["vector"][dropped], torch.zeros(int(dropped.sum()), 3)
    )


def test_module_feeds_null_condition_to_the_net():
    seen = []

    class Spy(MLP):
        def forward(self, x, c_noise, cond=None):
            seen.append(cond)
            return super().forward(x, c_noise, cond)

    module = DiffusionModule(
        Spy(2, hidden=8, depth=1, emb_dim=8, cond_dim=2), sf.VPLinear(), cond_dropout=0.25
    )
    B = 4000
    module.loss({"x0": torch.zeros(B, 2), "cond": torch.ones(B, 2)}, generator=_gen(3))
    zero = (seen[-1] == 0).all(dim=1).double().mean()
    assert abs(float(zero) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / B)


# ------------------------------------------------------------------------- EMA
def test_ema_warmup_values():
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(1, 0.999) == pytest.approx(2 / 11)
    assert ema_decay_at(10, 0.999) == pytest.approx(11 / 20)
    assert ema_decay_at(10**6, 0.999) == 0.999
    net = MLP(1, hidden=4, depth=1, emb_dim=4)
    module = DiffusionModule(net, sf.VPLinear(), ema_decay=0.9)
    p_net = next(module.net.parameters())
    p_ema = next(module.ema.parameters())
    ema = p_ema.detach().clone()
    for k in range(30):
        with torch.no_grad():
            p_net.fill_(float(k + 1))
        module.update_ema()
        d = min(0.9, (1 + k) / (10 + k))
        ema = d * ema + (1 - d) * (k + 1)
        torch.testing.assert_close(p_ema.detach(), ema)
    assert int(module.ema_updates) == 30
    assert module.denoiser().net is module.ema and module.denoiser(ema=False).net is module.net
    assert not module.train().ema.training  # the EMA copy never trains


# ------------------------------------------------------------------------- immiscible noise
def test_immiscible_assignment_is_optimal_and_a_permutation():
    g = _gen(0)
    x0 = torch.randn(6, 5, generator=g) + 0.8
    noise = torch.randn(6, 5, generator=g)
    out = immiscible_assign(x0, noise)
    cost = lambda n: float(((x0 - n) ** 2).sum())  # noqa: E731
    best = min(cost(noise[list(p)]) for p in itertools.permutations(range(6)))
    assert cost(out) == pytest.approx(best)
    assert sorted(map(tuple, out.tolist())) == sorted(map(tuple, noise.tolist()))


def test_immiscible_lowers_distance_keeps_gaussian_noise():
    g = _gen(1)
    B, D = 128, 6
    x0 = torch.randn(B, D, generator=g) * 0.5 + torch.linspace(-2, 2, B)[:, None]
    noise = torch.randn(B, D, generator=g)
    out = immiscible_assign(x0, noise)
    before = (x0 - noise).norm(dim=1).mean()
    after = (x0 - out).norm(dim=1).mean()
    assert after < 0.85 * before
    # same multiset of draws: pooled values are N(0, 1) (KS) with identical moments
    assert torch.equal(torch.sort(out.flatten()).values, torch.sort(noise.flatten()).values)
    assert stats.kstest(out.flatten().numpy(), "norm").pvalue > 1e-3


def test_immiscible_respects_masks():
    """Padded entries (garbage data) do not enter the assignment cost."""
    g = _gen(2)
    B, N = 24, 5
    mask = torch.rand(B, N, generator=g) < 0.6
    mask[:, 0] = True
    x0 = torch.randn(B, N, 3, generator=g)
    garbage = x0.clone()
    garbage[~mask] = 1e3
    noise = torch.randn(B, N, 3, generator=g)
    m = mask[..., None].expand_as(x0).double()
    assert torch.equal(immiscible_assign(garbage, noise, m), immiscible_assign(x0, noise, m))
    module = DiffusionModule(
        Transformer(3, width=8, depth=1, heads=2), sf.VPLinear(), immiscible=True
    )
    drawn = module.draw_noise(garbage, mask, _gen(3))
    assert torch.equal(drawn[~mask], torch.zeros_like(drawn[~mask]))


# ------------------------------------------------------------------------- sets: masks, zero CoM
def test_masked_set_loss_ignores_padding_and_centres_noise():
    g = _gen(4)
    B, N = 6, 7
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[:, 4:] = False
    mask[0, 2:] = False
    x0 = torch.randn(B, N, 5, generator=g)
    module = DiffusionModule(Transformer(5, width=16, depth=1, heads=2), sf.VPLinear(), zero_com=3)
    garbage = x0.clone()
    garbage[~mask] = 77.0
    a = module.loss({"x0": x0, "mask": mask}, generator=_gen(9))
    b = module.loss({"x0": garbage, "mask": mask}, generator=_gen(9))
    torch.testing.assert_close(a, b)
    noise = module.draw_noise(x0, mask, _gen(5))
    com = (noise[..., :3] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert float(com.abs().max()) < 1e-6
    assert torch.equal(noise[~mask], torch.zeros_like(noise[~mask]))
    assert float(noise[..., 3:][mask].std()) > 0.5  # non-coordinate features are not centred
    centred = remove_mean(x0, mask, 3)
    assert float(((centred[..., :3] * mask[..., None]).sum(1)).abs().max()) < 1e-5


# ------------------------------------------------------------------------- masked tokens (MDLM)
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_mdlm_loss_of_uniform_model_is_log_vocab(schedule):
    """A model with constant logits has NELBO log V per token: E_t[w(t) (1 - alpha(t))] log V
    with w = -alpha'/(1 - alpha) integrates to (alpha(t_eps) - alpha(1)) / (1 - t_eps) log V."""

    class Zeros(Transformer):
        def forward(self, x, c_noise, cond=None):
            return torch.zeros(*x.shape, self.vocab_size)

    V = 6
    process = sf.Masked(vocab_size=V, schedule=schedule)
    module = DiffusionModule(
        Zeros(vocab_size=V, width=8, depth=1, heads=2),
        process,
        time_sampling="stratified",
        t_eps=0.05,
    )
    x0 = torch.randint(0, V, (512, 32), generator=_gen(0))
    losses = [float(module.loss(x0, generator=_gen(s))) for s in range(20)]
    expected = math.log(V) * float(process.alpha(0.05) - process.alpha(1.0)) / 0.95
    assert abs(sum(losses) / len(losses) - expected) < 0.01 * expected


# ------------------------------------------------------------------------- one step per data kind
def _sample(den, x_T, cond=None, n=4):
    grid = solvers.make_grid(den.process, n)
    with torch.no_grad():
        return solvers.ddim(den, x_T, grid, cond=cond)


def test_step_and_sample_vector_data():
    module = DiffusionModule(MLP(2, hidden=32, depth=2, emb_dim=16), sf.VPLinear(), lr=1e-3)
    data = torch.randn(64, 2, generator=_gen(0))
    trainer = fit(module, data, max_steps=2, batch_size=32, progress=False, accelerator="cpu")
    assert trainer.global_step == 2 and int(module.ema_updates) == 2
    x = _sample(module.denoiser(), sf.VPLinear().prior_sample((5, 2), generator=_gen(1)))
    assert x.shape == (5, 2) and torch.isfinite(x).all()


def test_step_and_sample_time_series_with_condition():
    net = UNet1D(1, down_dims=(8, 16), n_groups=4, emb_dim=16, cond_dim=3)
    module = DiffusionModule(
        net, sf.VPCosine(), prediction="v", weighting="min-snr", cond_dropout=0.2
    )
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    batch = {"x0": torch.randn(8, 1, 12, generator=_gen(0)), "cond": torch.randn(8, 3)}
    assert math.isfinite(_step(module, batch, opt))
    den = module.denoiser().eval()
    x_T = den.process.prior_sample((3, 1, 12), generator=_gen(1))
    cond = torch.randn(3, 3, generator=_gen(2))
    x = _sample(sf.cfg(den, 2.0), x_T, cond)
    assert x.shape == (3, 1, 12) and torch.isfinite(x).all()


def test_step_and_sample_images_edm():
    net = UNet2D(3, base=8, mults=(1, 2), heads=2)
    process = sf.VE(sigma_max=40.0)
    module = DiffusionModule(
        net,
        process,
        prediction="edm",
        weighting="edm",
        sigma_data=0.5,
        time_sampling="lognormal",
        immiscible=True,
    )
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    assert math.isfinite(_step(module, torch.randn(6, 3, 8, 8, generator=_gen(0)) * 0.5, opt))
    x = _sample(module.denoiser(), process.prior_sample((2, 3, 8, 8), generator=_gen(1)))
    assert x.shape == (2, 3, 8, 8) and torch.isfinite(x).all()


def test_step_and_sample_masked_point_clouds():
    net = Transformer(3, width=16, depth=2, heads=2, cond_dim=1)
    module = DiffusionModule(net, sf.VPLinear(), zero_com=3, cond_dropout=0.1)
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    batch = {
        "x0": torch.randn(4, 6, 3, generator=_gen(0)),
        "mask": mask,
        "cond": torch.randn(4, 1, generator=_gen(1)),
    }
    assert math.isfinite(_step(module, batch, opt))
    cond = {"mask": mask, "vector": torch.randn(4, 1, generator=_gen(2))}
    x = _sample(module.denoiser(), torch.randn(4, 6, 3, generator=_gen(3)), cond)
    assert x.shape == (4, 6, 3) and torch.isfinite(x[mask]).all()


def test_step_and_sample_complex_images_with_zero_filled_condition():
    """k-space data: complex images as 2 real channels, conditioned on the zero-filled image."""
    g = _gen(0)
    z = torch.complex(torch.randn(6, 1, 8, 8, generator=g), torch.randn(6, 1, 8, 8, generator=g))
    mask = torch.zeros(8)
    mask[::2] = 1
    zero_filled = torch.fft.ifft2(torch.fft.fft2(z, norm="ortho") * mask, norm="ortho")
    net = UNet2D(2, base=8, mults=(1, 2), heads=2, cond_channels=2)
    module = DiffusionModule(net, sf.VPCosine(), prediction="eps")
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    batch = {"x0": to_channels(z), "cond": to_channels(zero_filled)}
    assert math.isfinite(_step(module, batch, opt))
    x = _sample(module.denoiser(), torch.randn(6, 2, 8, 8, generator=_gen(1)), batch["cond"])
    out = from_channels(x)
    assert out.shape == z.shape and out.is_complex() and torch.isfinite(x).all()


def test_step_and_sample_mean_reverting_restoration():
    net = UNet1D(2, down_dims=(8,), n_groups=4, emb_dim=8, cond_channels=2)
    process = sf.MeanReverting(max_sigma=0.3)
    module = DiffusionModule(net, process, prediction="x0")
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    x0 = torch.randn(8, 2, 16, generator=_gen(0))
    mu = x0 + 0.3 * torch.randn(8, 2, 16, generator=_gen(1))
    assert math.isfinite(_step(module, {"x0": x0, "mu": mu}, opt))
    x_T = process.prior_sample((8, 2, 16), generator=_gen(2), mu=mu)
    x = _sample(module.denoiser(), x_T, mu)
    assert x.shape == (8, 2, 16) and torch.isfinite(x).all()


def test_step_and_sample_tokens():
    V, L = 5, 10
    process = sf.Masked(vocab_size=V)
    net = Transformer(vocab_size=V, width=16, depth=2, heads=2)
    module = DiffusionModule(net, process, time_sampling="stratified")
    opt = torch.optim.AdamW(module.net.parameters(), 1e-3)
    assert math.isfinite(_step(module, torch.randint(0, V, (8, L), generator=_gen(0)), opt))
    den = module.denoiser().eval()
    x = process.prior_sample((4, L))
    x[:, :3] = torch.tensor([1, 2, 3])  # partly unmasked: those tokens are carried over
    with torch.no_grad():
        probs = den(x, torch.full((4,), 0.7))
        grid = solvers.make_grid(process, 6, spacing="uniform_t")
        tokens = solvers.masked_ancestral(den, x, grid, generator=_gen(1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, L, dtype=probs.dtype))
    assert bool((probs[:, :3].max(-1).values == 1).all())
    assert torch.equal(probs[:, :3].argmax(-1), x[:, :3])
    assert tokens.shape == (4, L) and int(tokens.max()) < V and int(tokens.min()) >= 0
    assert torch.equal(tokens[:, :3], x[:, :3])


# ------------------------------------------------------------------------- it learns
def test_training_learns_the_exact_gaussian_denoiser():
    """Flow matching on a 2-D Gaussian: the EMA denoiser ends within 5% (relative to the posterior
    variance) of the exact Tweedie denoiser, from > 100% at initialisation; the loss drops."""
    mean = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    oracle = GaussianOracle(mean, cov)
    process = sf.LinearInterpolant()
    g = _gen(0)
    torch.manual_seed(0)  # parameter initialisation only
    data = oracle.sample(4096, generator=g).float()
    module = DiffusionModule(
        MLP(2, hidden=64, depth=2, emb_dim=32), process, prediction="velocity", ema_decay=0.99
    )
    opt = torch.optim.Adam(module.net.parameters(), 3e-3)
    te = torch.tensor([0.05, 0.2, 0.5, 0.8], dtype=torch.float64).repeat_interleave(256)
    x0e = oracle.sample(len(te), generator=_gen(1))
    xe = process.marginal(x0e, te, torch.randn(x0e.shape, generator=_gen(2), dtype=torch.float64))
    exact = oracle.denoiser(process)(xe, te)
    post = ((x0e - exact) ** 2).sum(1).mean()

    def rel_err(den) -> float:
        with torch.no_grad():
            return float(((den(xe.float(), te.float()).double() - exact) ** 2).sum(1).mean() / post)

    assert rel_err(module.denoiser(ema=False)) > 1.0
    losses = [
        _step(module, data[torch.randint(0, 4096, (128,), generator=g)], opt) for _ in range(200)
    ]
    assert sum(losses[-50:]) < 0.95 * sum(losses[:50])
    assert rel_err(module.denoiser()) < 0.05


# ------------------------------------------------------------------------- fit, resume, errors
def _fit_module(seed: int = 0) -> DiffusionModule:
    torch.manual_seed(seed)
    return DiffusionModule(MLP(2, hidden=16, depth=1, emb_dim=8), sf.VPLinear(), lr=1e-2)


def test_resume_continues_exactly(tmp_path):
    """3 steps + resume to 6 = 6 steps in one go: weights, EMA and noise stream all restored."""
    data = torch.randn(32, 2, generator=_gen(0))
    loader = lambda: make_loader(data, batch_size=32, shuffle=False)  # noqa: E731
    kw = dict(batch_size=32, progress=False, accelerator="cpu", seed=3)
    ref = _fit_module()
    fit(ref, loader(), max_steps=6, **kw)
    first = _fit_module()
    fit(first, loader(), max_steps=3, ckpt_dir=tmp_path, **kw)
    assert (tmp_path / "last.ckpt").is_file() and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(_fit_module(), loader(), max_steps=6, ckpt_dir=tmp_path, **kw)
    second = _fit_module(seed=1)  # different init: everything must come from the checkpoint
    trainer = fit(second, loader(), max_steps=6, ckpt_dir=tmp_path, resume=True, **kw)
    assert trainer.global_step == 6 and int(second.ema_updates) == 6
    for a, b in zip(ref.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fit_on_dict_data_with_nested_condition_and_mask():
    g = _gen(0)
    n, N = 12, 5
    mask = torch.rand(n, N, generator=g) < 0.7
    mask[:, 0] = True
    data = {
        "x0": torch.randn(n, N, 3, generator=g),
        "mask": mask,
        "cond": {"vector": torch.randn(n, 2, generator=g), "channels": torch.randn(n, N, 1)},
    }
    net = Transformer(3, width=16, depth=1, heads=2, cond_dim=2, cond_features=1)
    module = DiffusionModule(net, sf.VPLinear(), zero_com=3, cond_dropout=0.5)
    trainer = fit(module, data, max_steps=3, batch_size=4, progress=False, accelerator="cpu")
    assert trainer.global_step == 3
    item = make_loader(data, batch_size=4).dataset[2]
    assert item["cond"]["vector"].shape == (2,) and item["mask"].dtype == torch.bool
    with pytest.raises(ValueError, match=r"share their first \(sample\) dimension"):
        make_loader({"x0": torch.zeros(4, 2), "cond": torch.zeros(3, 1)}, batch_size=2)


def test_module_errors():
    vp = sf.VPLinear()
    net = MLP(2, hidden=8, depth=1, emb_dim=8)
    with pytest.raises(ValueError, match="unknown weighting 'p2'"):
        DiffusionModule(net, vp, weighting="p2")
    with pytest.raises(ValueError, match="unknown prediction 'noise'"):
        DiffusionModule(net, vp, prediction="noise")
    with pytest.raises(ValueError, match="leave prediction and weighting unset"):
        DiffusionModule(net, sf.Masked(vocab_size=3), prediction="eps")
    with pytest.raises(ValueError, match="zero_com is the number of coordinate features"):
        DiffusionModule(net, vp, zero_com=True)
    module = DiffusionModule(net, vp)
    with pytest.raises(ValueError, match=r"needs 'x0' and may hold \['cond', 'mask', 'mu'\]"):
        module.loss({"x": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="has no mean; pass the observation as 'cond'"):
        module.loss({"x0": torch.zeros(2, 2), "mu": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="mean mu, but no mu was given"):
        DiffusionModule(net, sf.MeanReverting()).loss(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="mask shape"):
        module.loss({"x0": torch.zeros(2, 2), "mask": torch.ones(3, dtype=torch.bool)})


def test_progress_bar_counts_steps_of_the_whole_run(tmp_path, capsys):
    """The bar counts optimizer steps to ``max_steps`` (Lightning's rich bar said 'Epoch 7/-2'),
    across epochs, and a resumed run starts at its restored step."""
    data = torch.randn(16, 2, generator=_gen(0))
    kw = dict(batch_size=8, accelerator="cpu", seed=0)  # 2 batches per epoch: 5 steps = 3 epochs
    fit(_fit_module(), data, max_steps=3, ckpt_dir=tmp_path, **kw)
    fit(_fit_module(), data, max_steps=5, ckpt_dir=tmp_path, resume=True, **kw)
    err = capsys.readouterr().err
    assert "3/3" in err and "5/5" in err and "loss=" in err
    assert "Epoch" not in err and "/-" not in err


def test_resume_mid_epoch_with_shuffling_continues_exactly(tmp_path):
    """20 samples in batches of 8 (3 per epoch, the last one short), shuffled: 4 steps (mid
    epoch 2) + resume to 8 equals 8 steps in one go, and no 'not resumable' warning is raised."""
    import warnings

    data = torch.randn(20, 2, generator=_gen(0))
    kw = dict(batch_size=8, progress=False, accelerator="cpu", seed=5)
    ref = _fit_module()
    fit(ref, data, max_steps=8, **kw)
    fit(_fit_module(), data, max_steps=4, ckpt_dir=tmp_path, **kw)
    second = _fit_module(seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(second, data, max_steps=8, ckpt_dir=tmp_path, resume=True, **kw)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    for a, b in zip(ref.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_epoch_sampler_orders():
    from sciffusion.training.data import EpochSampler

    s = EpochSampler(10, seed=1)
    first, second = list(s), list(s)  # by hand: the epoch advances per pass
    assert sorted(first) == list(range(10)) and first != second
    s.set_epoch(1)
    assert list(s) == second
    s.resume(batches_done=4, batch_size=3)  # 4 per epoch: epoch 1 from its start
    assert list(s) == second
    s.resume(batches_done=5, batch_size=3)  # one batch into epoch 1
    assert list(s) == second[3:]
    assert list(EpochSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_resume_after_a_crash_continues_exactly(tmp_path):
    """A run that dies after its step-4 checkpoint (mid epoch) and is resumed to 8 steps equals
    8 steps in one go."""

    class Crash(pl.Callback):
        def on_train_batch_start(self, trainer, *_):
            if trainer.global_step == 6:
                raise RuntimeError("simulated crash")

    data = torch.randn(20, 2, generator=_gen(0))
    kw = dict(batch_size=8, progress=False, accelerator="cpu", seed=5)
    ref = _fit_module()
    fit(ref, data, max_steps=8, **kw)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(
            _fit_module(),
            data,
            max_steps=8,
            ckpt_dir=tmp_path,
            ckpt_every=4,
            callbacks=[Crash()],
            **kw,
        )
    second = _fit_module(seed=1)
    fit(second, data, max_steps=8, ckpt_dir=tmp_path, resume=True, **kw)
    for a, b in zip(ref.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
