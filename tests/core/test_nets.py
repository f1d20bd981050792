"""Networks: shapes across sizes, gradients reach every parameter, masks, conditions, registry."""

from __future__ import annotations

import json

import pytest
import torch
from sciffusion.nets import (
    MLP,
    NETS,
    NoiseEmbedding,
    Transformer,
    UNet1D,
    UNet2D,
    build_net,
    sinusoidal_features,
    split_cond,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets run fastest on one thread (and do not fight other test processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _noise(B: int, gen: torch.Generator) -> torch.Tensor:
    return torch.empty(B).uniform_(-2, 10, generator=gen)


# (net factory, input factory, cond factory) per data kind; each covers several sizes
CASES = {
    "mlp-2d": (lambda: MLP(2, hidden=32, depth=2, emb_dim=16), lambda g: torch.randn(3, 2), None),
    "mlp-flat-set": (
        lambda: MLP(12, hidden=32, depth=1, emb_dim=16, cond_dim=3),
        lambda g: torch.randn(3, 4, 3),
        lambda g: torch.randn(3, 3),
    ),
    "mlp-concat": (
        lambda: MLP(5, hidden=16, depth=1, emb_dim=16, cond_dim=2, cond_mode="concat"),
        lambda g: torch.randn(3, 5),
        lambda g: torch.randn(3, 2),
    ),
    "unet1d-T16": (
        lambda: UNet1D(2, down_dims=(8, 16), emb_dim=16),
        lambda g: torch.randn(3, 2, 16),
        None,
    ),
    "unet1d-T13-cond": (
        lambda: UNet1D(3, down_dims=(8, 16, 16), emb_dim=16, cond_dim=4, cond_channels=2),
        lambda g: torch.randn(2, 3, 13),
        lambda g: {"vector": torch.randn(2, 4), "channels": torch.randn(2, 2, 13)},
    ),
    "unet1d-1level": (
        lambda: UNet1D(1, down_dims=(8,), emb_dim=8, film_scale=False),
        lambda g: torch.randn(2, 1, 5),
        None,
    ),
    "unet2d-8x8": (
        lambda: UNet2D(1, base=8, mults=(1, 2), heads=2, emb_dim=16),
        lambda g: torch.randn(2, 1, 8, 8),
        None,
    ),
    "unet2d-odd-cond": (
        lambda: UNet2D(
            2,
            base=8,
            mults=(1, 2, 2),
            num_res_blocks=2,
            attn_levels=(1,),
            heads=2,
            cond_dim=3,
            cond_channels=2,
        ),
        lambda g: torch.randn(2, 2, 7, 10),
        lambda g: {"vector": torch.randn(2, 3), "channels": torch.randn(2, 2, 7, 10)},
    ),
    "unet2d-image-cond-tensor": (
        lambda: UNet2D(2, base=8, mults=(1,), heads=2, cond_channels=2, mid_attention=False),
        lambda g: torch.randn(2, 2, 5, 5),
        lambda g: torch.randn(2, 2, 5, 5),
    ),
    "transformer-set": (
        lambda: Transformer(3, width=16, depth=2, heads=2, cond_dim=2, cond_features=1),
        lambda g: torch.randn(2, 6, 3),
        lambda g: {
            "vector": torch.randn(2, 2),
            "channels": torch.randn(2, 6, 1),
            "mask": torch.tensor([[True] * 4 + [False] * 2, [True] * 6]),
        },
    ),
    "transformer-seq-learned-pos": (
        lambda: Transformer(4, width=16, depth=1, heads=4, positional="learned", max_len=10),
        lambda g: torch.randn(3, 9, 4),
        None,
    ),
    "transformer-tokens": (
        lambda: Transformer(vocab_size=7, width=16, depth=2, heads=2, cond_dim=2),
        lambda g: torch.randint(0, 8, (3, 11), generator=g),
        lambda g: torch.randn(3, 2),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_shape(case, gen):
    make_net, make_x, make_cond = CASES[case]
    net = make_net()
    x = make_x(gen)
    cond = make_cond(gen) if make_cond else None
    out = net(x, _noise(x.shape[0], gen), cond)
    expected = (*x.shape, net.vocab_size) if x.dtype == torch.long else x.shape
    assert out.shape == expected
    assert torch.isfinite(out).all()
    if make_cond is not None:  # a missing condition is the null (zero) condition
        assert net(x, _noise(x.shape[0], gen), None).shape == expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_reach_every_parameter(case, gen):
    """With zero-initialised output layers re-drawn at random, every parameter gets a gradient."""
    make_net, make_x, make_cond = CASES[case]
    net = make_net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    x = make_x(gen)
    cond = make_cond(gen) if make_cond else None
    out = net(x, _noise(x.shape[0], gen), cond)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_learned_null_replaces_zero_condition(gen):
    net = MLP(3, hidden=16, depth=1, emb_dim=8, cond_dim=2, learned_null=True)
    with torch.no_grad():
        net.vector.null.copy_(torch.tensor([0.7, -1.3]))
    x, c = torch.randn(2, 3, generator=gen), torch.zeros(2)
    null_out = net(x, c, torch.zeros(2, 2))
    assert torch.equal(null_out, net(x, c, None))  # missing = zeros = null
    assert torch.allclose(null_out, net(x, c, torch.tensor([[0.7, -1.3]] * 2)))
    # without the learned null, zeros are fed as they are
    plain = MLP(3, hidden=16, depth=1, emb_dim=8, cond_dim=2)
    assert torch.equal(plain(x, c, None), plain(x, c, torch.zeros(2, 2)))


def _real_outputs_ignore_padding(net, x, x_pad_changed, mask, c_noise, extra=None):
    cond = {"mask": mask, **(extra or {})}
    a = net(x, c_noise, cond)
    b = net(x_pad_changed, c_noise, cond)
    return a, b


def test_transformer_padding_does_not_leak(gen):
    """Padded atoms (mask False) never change the outputs of real atoms; their outputs are 0."""
    net = Transformer(3, width=16, depth=3, heads=2, cond_features=2)
    with torch.no_grad():  # leave adaLN-zero so that attention really mixes elements
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    B, N = 3, 7
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1] * 7, [1, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    x = torch.randn(B, N, 3, generator=gen)
    per = torch.randn(B, N, 2, generator=gen)
    x2, per2 = x.clone(), per.clone()
    x2[~mask] = 100 * torch.randn(int((~mask).sum()), 3, generator=gen)
    per2[~mask] = -50.0
    c = _noise(B, gen)
    a = net(x, c, {"mask": mask, "channels": per})
    b = net(x2, c, {"mask": mask, "channels": per2})
    assert torch.allclose(a[mask], b[mask], atol=1e-5)
    assert torch.equal(a[~mask], torch.zeros_like(a[~mask]))
    # and the real atoms do interact (the check above is not vacuous)
    x3 = x.clone()
    x3[0, 1] += 1.0
    assert not torch.allclose(net(x3, c, {"mask": mask, "channels": per})[0, 0], a[0, 0])


def test_transformer_set_is_permutation_equivariant(gen):
    net = Transformer(3, width=16, depth=2, heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    x, c = torch.randn(2, 5, 3, generator=gen), _noise(2, gen)
    perm = torch.randperm(5, generator=gen)
    assert torch.allclose(net(x, c)[:, perm], net(x[:, perm], c), atol=1e-5)


def test_transformer_token_padding(gen):
    net = Transformer(vocab_size=5, width=16, depth=2, heads=2)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    x = torch.randint(0, 6, (2, 8), generator=gen)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 5:] = False
    x2 = x.clone()
    x2[:, 5:] = (x2[:, 5:] + 1) % 6
    c = _noise(2, gen)
    a, b = net(x, c, {"mask": mask}), net(x2, c, {"mask": mask})
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)


def test_unet_padding_crops_back(gen):
    """Odd sizes are padded internally; results do not depend on what lies outside the crop."""
    net = UNet2D(1, base=8, mults=(1, 2, 2), heads=2)
    x = torch.randn(1, 1, 9, 6, generator=gen)
    assert net(x, torch.zeros(1)).shape == (1, 1, 9, 6)
    net1 = UNet1D(2, down_dims=(16, 16, 16))
    assert net1(torch.randn(1, 2, 3, generator=gen), torch.zeros(1)).shape == (1, 2, 3)


def test_noise_embedding_resolves_typical_levels():
    """Features separate noise levels 0.01 apart over the typical range and do not alias over the
    whole clamp range [-20, 20] (distinct points stay apart)."""
    c = torch.arange(-20.0, 20.0001, 0.01)
    f = sinusoidal_features(c, 128)
    assert torch.allclose(f.norm(dim=1), torch.full_like(c, 8.0), atol=1e-4)  # sqrt(64)
    step = (f[1:] - f[:-1]).norm(dim=1)
    assert float(step.min()) > 0.5
    idx = torch.arange(0, len(c), 50)  # points 0.5 apart: all pairwise far apart
    d = torch.cdist(f[idx], f[idx]) + 1e9 * torch.eye(len(idx))
    assert float(d.min()) > 3.0
    emb = NoiseEmbedding(32, kind="fourier", seed=3)
    again = NoiseEmbedding(32, kind="fourier", seed=3)
    assert torch.equal(emb.freqs, again.freqs)
    assert emb(torch.zeros(4)).shape == (4, 32)


@pytest.mark.parametrize("name", sorted(NETS))
def test_registry_rebuilds_from_json(name, gen):
    make_net, make_x, make_cond = {
        "mlp": CASES["mlp-flat-set"],
        "unet1d": CASES["unet1d-T13-cond"],
        "unet2d": CASES["unet2d-odd-cond"],
        "transformer": CASES["transformer-tokens"],
    }[name]
    net = make_net()
    cfg = json.loads(json.dumps(net.config()))
    assert cfg["name"] == name
    twin = build_net(cfg["name"], **cfg["kwargs"])
    twin.load_state_dict(net.state_dict())
    x = make_x(gen)
    cond = make_cond(gen) if make_cond else None
    c = _noise(x.shape[0], gen)
    assert torch.equal(net(x, c, cond), twin(x, c, cond))


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown network 'resnet'.*registered networks: mlp"):
        build_net("resnet")
    with pytest.raises(ValueError, match=r"bad keywords for network 'mlp'.*Allowed keywords: dim"):
        build_net("mlp", dim=2, widht=3)


def test_condition_errors(gen):
    net = UNet1D(2, down_dims=(8,), emb_dim=8)
    x = torch.randn(2, 2, 4)
    with pytest.raises(ValueError, match=r"no vector condition.*cond_dim=3"):
        net(x, torch.zeros(2), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"no channel condition.*cond_channels=1"):
        net(x, torch.zeros(2), torch.randn(2, 1, 4))
    cnet = UNet1D(2, down_dims=(8,), emb_dim=8, cond_dim=3)
    with pytest.raises(ValueError, match=r"expects \(2, 3\)"):
        cnet(x, torch.zeros(2), torch.randn(2, 4))
    with pytest.raises(ValueError, match="unknown condition key"):
        cnet(x, torch.zeros(2), {"vec": torch.randn(2, 3)})
    with pytest.raises(ValueError, match=r"expects \(B, 2, T\)"):
        cnet(torch.randn(2, 3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="c_noise must be"):
        cnet(x, torch.zeros(3))
    with pytest.raises(ValueError, match="divisible by n_groups"):
        UNet1D(2, down_dims=(12,))
    with pytest.raises(ValueError, match="exactly one of features"):
        Transformer()
    t = Transformer(3, width=8, heads=2, depth=1)
    with pytest.raises(TypeError, match="bool"):
        t(torch.randn(1, 2, 3), torch.zeros(1), {"mask": torch.ones(1, 2)})
    with pytest.raises(ValueError, match="at least one real element"):
        t(torch.randn(1, 2, 3), torch.zeros(1), {"mask": torch.zeros(1, 2, dtype=torch.bool)})


def test_mu_is_the_channel_condition_of_mean_processes():
    mu = torch.randn(2, 3, 5)
    assert split_cond({"mu": mu}).channels is mu
    ch = torch.randn(2, 1, 5)
    assert split_cond({"mu": mu, "channels": ch}).channels is ch
    routed = split_cond({"cond": torch.randn(2, 4), "mask": torch.ones(2, 5, dtype=torch.bool)})
    assert routed.vector.shape == (2, 4) and routed.mask is not None
