"""Safe outputs and run configs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sciffusion._files import atomic_path, atomic_write_text, prepare_out_dir
from sciffusion.config import dump_toml, load_config, save_config


@dataclass
class Cfg:
    steps: int = 10
    lr: float = 1e-3
    name: str = "toy"
    fast: bool = False
    sizes: list = None  # type: ignore[assignment]


def test_atomic_write_replaces_only_on_success(tmp_path):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "one")
    with pytest.raises(RuntimeError), atomic_path(f) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash while writing")
    assert f.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left
    with pytest.raises(FileExistsError, match="--force"):
        atomic_write_text(f, "two", force=False)


def test_out_dir_is_never_overwritten_without_force(tmp_path):
    out = prepare_out_dir(tmp_path / "run")
    (out / "result.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty; pass --force"):
        prepare_out_dir(out)
    assert prepare_out_dir(out, force=True) == out
    assert prepare_out_dir(out, resume=True) == out
    with pytest.raises(FileExistsError, match="is a file"):
        prepare_out_dir(out / "result.txt")


def test_config_precedence_and_round_trip(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('steps = 50\nname = "big"\n[mine]\nfast = true\n[other]\nx = 1\n')
    cfg = load_config(Cfg, f, section="mine", steps=None, lr=0.1)
    assert cfg.fast
    assert (cfg.steps, cfg.lr, cfg.name) == (50, 0.1, "big")
    save_config(cfg, tmp_path)
    again = load_config(Cfg, tmp_path / "config.toml")
    assert again == cfg
    assert "sizes" not in dump_toml(cfg)


def test_config_errors_name_the_key(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("stepz = 5\n")
    with pytest.raises(ValueError, match=r"unknown key 'stepz'.*allowed keys: fast, lr"):
        load_config(Cfg, f)
    f.write_text('steps = "many"\n')
    with pytest.raises(ValueError, match="'steps' must be int"):
        load_config(Cfg, f)
    f.write_text("steps = [\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(Cfg, f)
    with pytest.raises(FileNotFoundError):
        load_config(Cfg, tmp_path / "missing.toml")


def test_atomic_writes_get_normal_permissions(tmp_path):
    """mkstemp creates 0600 files; shipped checkpoints must stay readable by other users."""
    import os
    import stat

    from sciffusion._files import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
