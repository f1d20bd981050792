"""Parity with diffusers' schedulers on the same sigma grid (docs/notes 02, B5).

The adapter is ``sciffusion.solvers.bench.run_diffusers``: diffusers' ``sigmas`` /
``alphas_cumprod`` are overwritten with our grid's after ``set_timesteps``, the exact denoiser is
wrapped with ``prediction_type="sample"`` and the model's sigma is read by loop index. Runs in
float64 (diffusers' multistep DPM-Solver and Euler upcast the sample to float32 inside ``step``,
hence their ~1e-6 floor); skipped only when diffusers is not installed (the ``bench`` extra).
"""

from __future__ import annotations

import pytest
import torch
from sciffusion.oracles import toy_gmm
from sciffusion.processes import VE
from sciffusion.solvers import get_solver, make_grid

pytest.importorskip("diffusers")


from sciffusion.solvers import bench

# scheduler label -> (our solver, its knobs); PNDM is compared separately (final step differs)
CASES = [k for k in bench.PARITY if k != "PNDM (PLMS)"]


@pytest.fixture(scope="module")
def problem():
    process = VE(sigma_max=bench.SIGMA_MAX)
    d = toy_gmm(16, "sharp").denoiser(process)
    x = bench.SIGMA_MAX * torch.randn(
        32, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return d, x


@pytest.mark.parametrize("spacing", ["log_snr", "karras"])
@pytest.mark.parametrize("label", CASES)
def test_parity_with_diffusers(label, spacing, problem):
    """Ours and diffusers agree to 1e-5 at NFE 5, 10 and 20 (measured: DDIM, UniPC-2, DEIS,
    Heun ~1e-13; DPM++2M/3M and Euler 1e-7 to 6e-6, diffusers' float32 upcast)."""
    d, x = problem
    name, knobs = bench.PARITY[label]
    spec = get_solver(name)
    cfg = {"lower_order_final": False} if label.startswith("DEIS") else None
    for nfe in (5, 10, 20):
        grid = make_grid(d.process, bench.steps_for_nfe(label, nfe), spacing)
        ours = spec(d, x, grid, **knobs)
        theirs = bench.run_diffusers(label, d, x, grid, config=cfg)
        err = float((ours - theirs).abs().max())
        assert err < 1e-5, (label, nfe, err)


def test_plms_differs_from_diffusers_only_in_the_final_jump(problem):
    """diffusers' PNDM(skip_prk_steps) ends with a DDIM transfer using the Adams-Bashforth mix of
    noise estimates; our PLMS ends with the denoiser's own estimate (first-order final jump).
    Replaying diffusers' final step from our second-to-last state recovers its output."""
    d, x = problem
    grid = make_grid(d.process, 12)
    states = []
    ours = get_solver("plms")(d, x, grid, callback=lambda info: states.append(info["x"]))
    theirs = bench.run_diffusers("PNDM (PLMS)", d, x, grid)
    y = states[-2]  # VE state at grid[-2] (sigma_min)
    s = float(d.process.sigma(grid[-2]))
    # the last four noise estimates on our own path
    eps = []
    for i in range(len(grid) - 5, len(grid) - 1):
        xi = states[i - 1]
        si = float(d.process.sigma(grid[i]))
        eps.append((xi - d(xi, torch.full((len(x),), float(grid[i]), dtype=x.dtype))) / si)
    e_mix = (55 * eps[3] - 59 * eps[2] + 37 * eps[1] - 9 * eps[0]) / 24
    assert torch.allclose(y - s * e_mix, theirs, rtol=0, atol=1e-8)
    assert not torch.allclose(ours, theirs, atol=1e-4)


def test_write_section_replaces_only_the_solvers_block(tmp_path):
    path = tmp_path / "benchmarks.md"
    bench.write_section("first", path)
    assert path.read_text().startswith("# Benchmarks\n")
    other = "<!-- mri:start -->\nMRI numbers\n<!-- mri:end -->\n"
    path.write_text(path.read_text() + "\n" + other)
    bench.write_section("second", path)
    text = path.read_text()
    assert "second" in text and "first" not in text and other in text
    assert text.count(bench.START) == 1 and text.count(bench.END) == 1
