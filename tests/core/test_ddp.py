"""DDP with two CPU processes (gloo) through ``fit``: per-rank noise, synced weights, saving."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("ddp_train.py")


@pytest.mark.slow
def test_ddp_two_cpu_ranks(tmp_path):
    """Budget: 90 s on 2 cores (two Python processes importing torch + Lightning, 3 steps).

    Both ranks draw different noise (seeds ``seed + rank``), end with identical weights (DDP
    averages the gradients), and rank 0 saves a checkpoint that loads back.
    """
    from safetensors.torch import load_file
    from sciffusion.io import from_pretrained

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert int(r0["world_size"]) == int(r1["world_size"]) == 2
    assert (int(r0["seed"]), int(r1["seed"])) == (7, 8)
    assert r0["first_noise"].shape == r1["first_noise"].shape == (8, 2)
    assert not torch.allclose(r0["first_noise"], r1["first_noise"])
    assert int(r0["ema_updates"]) == int(r1["ema_updates"]) == 3
    for k in r0:
        if k.startswith("net."):
            torch.testing.assert_close(r0[k], r1[k], rtol=0, atol=0)
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    den = from_pretrained(tmp_path / "model")
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(den(x, torch.full((4,), 0.5))).all()
    assert not list(tmp_path.glob("lightning_logs"))
