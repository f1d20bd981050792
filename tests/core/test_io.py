"""save_pretrained / from_pretrained: exact round trips and one clear error per failure."""

from __future__ import annotations

import json

import pytest
import sciffusion as sf
import torch
from sciffusion.io import from_pretrained, save_pretrained
from sciffusion.nets import MLP, Transformer, UNet2D
from sciffusion.training import DiffusionModule


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def test_round_trip_gaussian_identical_outputs(tmp_path, gen):
    net = UNet2D(2, base=8, mults=(1, 2), heads=2, cond_channels=2, embedding="fourier")
    _randomise(net)
    den = sf.Denoiser(net, sf.VPCosine(s=0.01), "v", sigma_data=0.6).eval()
    save_pretrained(den, tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["net"]["name"] == "unet2d" and cfg["process"] == {
        "name": "vp-cosine",
        "s": 0.01,
        "log_snr_max_t": -10.2,
    }
    assert cfg["prediction"] == "v" and cfg["sigma_data"] == 0.6 and cfg["format_version"] == 1
    back = from_pretrained(tmp_path / "ckpt")
    assert isinstance(back, sf.Denoiser) and not back.training
    assert back.process == den.process
    x = torch.randn(3, 2, 7, 9, generator=gen)
    cond = torch.randn(3, 2, 7, 9, generator=gen)
    t = torch.rand(3, generator=gen)
    assert torch.equal(den(x, t, cond), back(x, t, cond))
    as64 = from_pretrained(tmp_path / "ckpt", dtype=torch.float64)
    assert next(as64.parameters()).dtype == torch.float64


def test_round_trip_module_saves_ema_and_tokens(tmp_path, gen):
    V = 4
    module = DiffusionModule(
        Transformer(vocab_size=V, width=8, depth=1, heads=2),
        sf.Masked(vocab_size=V, schedule="cosine"),
    )
    _randomise(module.net, 1)
    _randomise(module.ema, 2)
    save_pretrained(module, tmp_path / "m")
    back = from_pretrained(tmp_path / "m")
    assert isinstance(back, sf.MaskedDenoiser) and back.process == module.process
    x = torch.randint(0, V + 1, (2, 6), generator=gen)
    t = torch.full((2,), 0.5)
    assert torch.equal(back(x, t), module.denoiser(ema=True).eval()(x, t))
    assert not torch.equal(back(x, t), module.denoiser(ema=False)(x, t))
    save_pretrained(module, tmp_path / "live", ema=False)
    assert torch.equal(from_pretrained(tmp_path / "live")(x, t), module.denoiser(ema=False)(x, t))


def test_refuses_to_overwrite(tmp_path):
    den = sf.Denoiser(MLP(2, hidden=8, depth=1, emb_dim=8), sf.VPLinear())
    save_pretrained(den, tmp_path)
    with pytest.raises(FileExistsError, match=r"already holds a checkpoint.*force=True"):
        save_pretrained(den, tmp_path)
    other = sf.Denoiser(MLP(2, hidden=8, depth=1, emb_dim=8), sf.VPLinear(), "x0")
    save_pretrained(other, tmp_path, force=True)
    assert from_pretrained(tmp_path).prediction == "x0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def _saved(tmp_path):
    den = sf.Denoiser(MLP(3, hidden=8, depth=1, emb_dim=8), sf.VE(), "edm", sigma_data=0.5)
    return save_pretrained(den, tmp_path / "ck")


def _edit(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            del cfg[k]
        else:
            cfg[k] = v
    (path / "config.json").write_text(json.dumps(cfg))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    path = _saved(tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors.*incomplete"):
        from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no config.json in"):
        from_pretrained(path)


def test_corrupt_files(tmp_path):
    path = _saved(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"not a readable safetensors file.*corrupt or truncated"):
        from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        from_pretrained(path)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("net", "has no 'net' key; add"),
        ("process", "has no 'process' key; add"),
        ("prediction", 'has no \'prediction\' key; add "prediction": "eps"'),
        ("sigma_data", "has no 'sigma_data' key; add \"sigma_data\": 1.0"),
        ("format_version", "has no 'format_version' key"),
    ],
)
def test_missing_key_names_key_and_fix(tmp_path, key, message):
    path = _saved(tmp_path)
    _edit(path, **{key: None})
    with pytest.raises(ValueError, match=message):
        from_pretrained(path)


def test_unknown_names_and_versions(tmp_path):
    path = _saved(tmp_path)
    _edit(path, net={"name": "resnet9", "kwargs": {}})
    with pytest.raises(ValueError, match="unknown network 'resnet9'; registered networks"):
        from_pretrained(path)
    path = _saved(tmp_path / "b")
    _edit(path, process={"name": "vp-quadratic"})
    with pytest.raises(ValueError, match="unknown process 'vp-quadratic'; known processes"):
        from_pretrained(path)
    path = _saved(tmp_path / "c")
    _edit(path, format_version=99)
    with pytest.raises(ValueError, match=r"format_version 99.*Upgrade sciffusion"):
        from_pretrained(path)
    path = _saved(tmp_path / "d")
    _edit(path, prediction="logits")
    with pytest.raises(ValueError, match="unknown prediction 'logits'"):
        from_pretrained(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    path = _saved(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["net"]["kwargs"]["hidden"] = 16
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"do not fit the network.*shape mismatch.*\(8, 8\)"):
        from_pretrained(path)
    cfg["net"]["kwargs"].update(hidden=8, depth=2)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing \['blocks.1"):
        from_pretrained(path)


def test_unsaveable_objects(tmp_path):
    with pytest.raises(TypeError, match=r"no config\(\); subclass sciffusion\.nets\.Net"):
        save_pretrained(sf.Denoiser(torch.nn.Identity(), sf.VPLinear()), tmp_path / "a")

    class Custom(MLP):  # a subclass that was never registered
        pass

    with pytest.raises(TypeError, match="not in the network registry"):
        save_pretrained(sf.Denoiser(Custom(2), sf.VPLinear()), tmp_path / "b")
    with pytest.raises(TypeError, match="cannot be serialised"):
        save_pretrained(sf.Denoiser(MLP(2), sf.StochasticInterpolant()), tmp_path / "c")
    with pytest.raises(TypeError, match=r"takes a sciffusion.Denoiser"):
        save_pretrained(MLP(2), tmp_path / "d")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
