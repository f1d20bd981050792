"""``sciffusion mri`` end to end on 16x16 files and tiny nets: outputs, config.toml, --force,
clear one-line errors for bad files, input files never modified."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from sciffusion.datasets.mri.fastmri_io import file_checksum
from sciffusion.domains.mri.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def _ok(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def _err(args, match):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, r.output + repr(r.exception)
    assert "error:" in r.output and match in " ".join(r.output.split()), r.output
    return r


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    _ok(["simulate", "--out", root, "--n-volumes", 1, "--n-slices", 2, "--size", 16])
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_prior):
    """Untrained tiny priors saved like `mri train` saves them (training is test_train_cli)."""
    from sciffusion.io import save_pretrained

    root = tmp_path_factory.mktemp("models")
    for kind in ("cond", "uncond"):
        d = save_pretrained(tiny_prior(kind).denoiser, root / kind / "model")
        (d / "mri.json").write_text(json.dumps({"prior": kind, "size": 16}))
    return root


def test_simulate_writes_files_and_refuses_overwrite(sim):
    files = sorted((sim / "data").glob("*.h5"))
    assert len(files) == 1 and (sim / "config.toml").is_file()
    with h5py.File(files[0], "r") as f:
        assert f["kspace"].shape == (2, 32, 16) and f["kspace"].dtype == np.complex64
    _err(["simulate", "--out", sim, "--size", 16], "not empty")


@pytest.mark.slow
def test_train_cli(tmp_path):
    """Two steps of a tiny cond prior through the CLI (Lightning start-up: about 8 s)."""
    out = tmp_path / "cond"
    _ok(
        [
            "train",
            "--prior",
            "cond",
            "--fast",
            "--size",
            16,
            "--steps",
            2,
            "--batch-size",
            4,
            "--out",
            out,
            "--device",
            "cpu",
        ]
    )
    info = json.loads((out / "model" / "mri.json").read_text())
    assert info["prior"] == "cond" and info["size"] == 16 and info["recipe"]["steps"] == 2
    assert (out / "config.toml").is_file() and (out / "model" / "model.safetensors").is_file()
    _err(["train", "--prior", "cond", "--out", out], "not empty")
    _err(["train", "--prior", "ddpm", "--out", tmp_path / "x"], "unknown prior")


def test_reconstruct_evaluate(sim, models, tmp_path):
    src = sim / "data" / "phantom_0000.h5"
    before = file_checksum(src)
    out = tmp_path / "rec"
    _ok(
        [
            "reconstruct",
            src,
            "--out",
            out,
            "--model",
            models / "cond",
            "--method",
            "cond",
            "--nfe",
            2,
            "--n-samples",
            2,
            "--sigma",
            0.01,
            "--acceleration",
            4,
            "--center-fraction",
            0.125,
        ]
    )
    assert file_checksum(src) == before  # input never modified
    m = json.loads((out / "metrics.json").read_text())["phantom_0000.h5"]
    assert set(m) == {"cond", "zero_filled", "tv"} and m["tv"]["psnr"] > m["zero_filled"]["psnr"]
    assert (out / "figures" / "phantom_0000.png").stat().st_size > 1000
    with h5py.File(out / "reconstructions" / "phantom_0000.h5", "r") as f:
        assert f["reconstruction"].shape == (2, 16, 16) and f["std"].shape == (2, 16, 16)
    ev = tmp_path / "ev"
    r = _ok(["evaluate", sim / "data", out / "reconstructions", "--out", ev])
    assert "PSNR" in r.output
    e = json.loads((ev / "metrics.json").read_text())["phantom_0000.h5"]
    assert e["psnr"] == pytest.approx(m["cond"]["psnr"], abs=1e-3)
    _err(["reconstruct", src, "--out", out, "--model", models / "cond"], "not empty")


def test_acquire(sim, models, tmp_path):
    out = tmp_path / "acq"
    _ok(
        [
            "acquire",
            sim / "data",
            "--out",
            out,
            "--model",
            models / "uncond",
            "--nfe",
            4,
            "--n-particles",
            2,
            "--acceleration",
            4,
        ]
    )
    m = json.loads((out / "metrics.json").read_text())["phantom_0000.h5"]
    assert m["budget"] == 4 and all(len(set(c)) == 4 for c in m["columns"])
    assert (out / "figures" / "phantom_0000_mask.png").is_file()


def _copy(src, dst, edit):
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k in f:
            g.create_dataset(k, data=f[k][()])
        for k, v in f.attrs.items():
            g.attrs[k] = v
        edit(g)
    return dst


def test_bad_files_are_explained(sim, models, tmp_path):
    src = sim / "data" / "phantom_0000.h5"
    before = file_checksum(src)
    bad = tmp_path / "bad"
    bad.mkdir()

    def no_kspace(g):
        del g["kspace"]

    def real_kspace(g):
        k = g["kspace"][()]
        del g["kspace"]
        g.create_dataset("kspace", data=np.abs(k).astype(np.float32))

    def wide_mask(g):
        del g["reconstruction_esc"]
        g.create_dataset("mask", data=np.ones(20, dtype=np.float32))

    def nan_kspace(g):
        k = g["kspace"][()]
        k[0, 3, 8] = np.nan
        g["kspace"][...] = k

    cases = [
        (no_kspace, "missing dataset 'kspace'"),
        (real_kspace, "complex64"),
        (wide_mask, "mask has shape (20,) but kspace has 16 columns"),
        (nan_kspace, "non-finite"),
    ]
    for i, (edit, msg) in enumerate(cases):
        f = _copy(src, bad / f"case{i}.h5", edit)
        f_sum = file_checksum(f)
        _err(
            [
                "reconstruct",
                f,
                "--out",
                tmp_path / f"o{i}",
                "--method",
                "zero_filled",
                "--compare",
                "",
            ],
            msg,
        )
        assert file_checksum(f) == f_sum
    _err(["reconstruct", tmp_path / "missing.h5", "--out", tmp_path / "o9"], "not a file")
    _err(["reconstruct", src, "--out", tmp_path / "o8", "--method", "magic"], "unknown method")
    _err(
        [
            "acquire",
            src,
            "--out",
            tmp_path / "o7",
            "--strategy",
            "best",
            "--model",
            models / "uncond",
        ],
        "unknown strategy",
    )
    assert file_checksum(src) == before
