"""The registry: metadata matches behaviour (NFE), every solver survives every grid, errors."""

from __future__ import annotations

import pytest
import torch
from sciffusion.oracles import DiscreteOracle, toy_gmm
from sciffusion.processes import VE, Masked, VPLinear
from sciffusion.solvers import (
    SOLVERS,
    SPACINGS,
    SolverSpec,
    deis,
    dpmpp_multistep,
    get_solver,
    make_grid,
    nfe_formula,
    per_sample_generators,
    sample,
    si_sde,
    unipc,
)

CONTINUOUS = [n for n, s in SOLVERS.items() if s.kind in ("ode", "sde")]
DISCRETE = [n for n, s in SOLVERS.items() if s.kind == "discrete"]


class Counting:
    """Wraps a denoiser and counts its calls."""

    def __init__(self, denoiser):
        self.denoiser, self.process, self.calls = denoiser, denoiser.process, 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return self.denoiser(x, t, cond)


@pytest.fixture(scope="module")
def gmm_vp():
    return toy_gmm(2, "sharp").denoiser(VPLinear())


@pytest.mark.parametrize("name", [n for n in CONTINUOUS if SOLVERS[n].nfe is not None])
def test_nfe_matches_registry(name, gmm_vp):
    """``SolverSpec.nfe(n)`` is the number of model calls on an n-step grid ending at t = 0."""
    spec = get_solver(name)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for n in (1, 2, 3, 4, 5, 6, 9, 12):
        d = Counting(gmm_vp)
        spec(d, x, make_grid(d.process, n), generator=torch.Generator().manual_seed(1))
        assert d.calls == spec.nfe(n), (name, n, d.calls, spec.nfe(n))


N_LOG_SNR = (1, 2, 3, 4, 7, 13, 50)  # NFE in [1, 50] on the default spacing ...
N_OTHER = (1, 2, 3, 7)  # ... and a sample of it on the others (keeps the sweep fast)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_finite_on_every_grid(name):
    """No NaN or inf for NFE in [1, 50] x every spacing (VP; VE log-SNR), float64 and float32."""
    spec = get_solver(name)
    g = torch.Generator().manual_seed(0)
    for process, spacings in ((VPLinear(), SPACINGS), (VE(), ("log_snr",))):
        oracle = toy_gmm(2, "sharp")
        d = oracle.denoiser(process)
        x = process.prior_sample((3, 2), generator=g, dtype=torch.float64)
        for spacing in spacings:
            ns = N_LOG_SNR if spacing == "log_snr" else N_OTHER
            for n in ns if spec.nfe is not None else (1, 4):  # adaptive: only the ends matter
                out = spec(d, x, make_grid(process, n, spacing), generator=g)
                assert torch.isfinite(out).all(), (name, process.name, spacing, n)
        d32 = oracle.to(torch.float32).denoiser(process)
        out32 = spec(d32, x.float(), make_grid(process, 6), generator=g)
        assert out32.dtype == torch.float32 and torch.isfinite(out32).all()


@pytest.mark.parametrize("name", DISCRETE)
def test_discrete_nfe_bound_and_output(name):
    oracle = DiscreteOracle(
        torch.rand(3**3, generator=torch.Generator().manual_seed(0)), vocab_size=3, length=3
    )
    d = Counting(oracle.denoiser())
    x = d.process.prior_sample((16, 3))
    for n in (1, 2, 5, 20):
        d.calls = 0
        out = sample(
            name,
            d,
            x,
            make_grid(d.process, n, "uniform_t"),
            generator=torch.Generator().manual_seed(n),
        )
        assert out.shape == x.shape and int(out.max()) < 3 and int(out.min()) >= 0
        bound = SOLVERS[name].nfe(n) if SOLVERS[name].nfe is not None else 3
        assert d.calls <= bound


def test_registry_metadata():
    for name, spec in SOLVERS.items():
        assert spec.name == name and spec.summary and spec.min_steps >= 1
        assert spec.kind in ("ode", "sde", "discrete")
        assert (spec.order > 0) == (spec.kind == "ode"), name
    assert nfe_formula(SOLVERS["heun"]) == "2n-1"
    assert nfe_formula(SOLVERS["dpm_solver_3"]) == "3n-2"
    assert nfe_formula(SOLVERS["pndm"]) == "n+9"
    assert nfe_formula(SOLVERS["dpm_solver_adaptive"]) == "adaptive"
    assert SOLVERS["dpmpp_3m_exact"].options == {"variant": "exact"}


def test_bad_inputs_give_clear_errors(gmm_vp, monkeypatch):
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"unknown solver 'dpm\+\+'.*registered solvers: .*ddim"):
        sample("dpm++", gmm_vp, x, make_grid(gmm_vp.process, 4))
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample("unipc_bh2_2", gmm_vp, x, torch.tensor([0.5, 0.7, 0.1]))
    with pytest.raises(ValueError, match="needs at least 1 steps; the grid has 0"):
        sample("ddim", gmm_vp, x, torch.tensor([0.5]))
    monkeypatch.setitem(
        SOLVERS, "needs3", SolverSpec("needs3", SOLVERS["ddim"].fn, "ode", 1, "test", min_steps=3)
    )
    with pytest.raises(ValueError, match="needs3 needs at least 3 steps; the grid has 2"):
        sample("needs3", gmm_vp, x, make_grid(gmm_vp.process, 2))
    grid = make_grid(gmm_vp.process, 4)
    with pytest.raises(ValueError, match="variant"):
        unipc(gmm_vp, x, grid, variant="bh3")
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        unipc(gmm_vp, x, grid, order=4)
    with pytest.raises(ValueError, match="DEIS variant"):
        deis(gmm_vp, x, grid, variant="lambda")
    with pytest.raises(ValueError, match="r must be 0, 1, 2 or 3"):
        deis(gmm_vp, x, grid, r=5)
    with pytest.raises(ValueError, match="variant must be 'paper' or 'exact'"):
        dpmpp_multistep(gmm_vp, x, grid, variant="fixed")
    with pytest.raises(ValueError, match="unknown diffusion"):
        si_sde(gmm_vp, x, grid, w="cubic")
    with pytest.raises(ValueError, match="per-sample generators for a batch of 2"):
        sample("ddpm", gmm_vp, x, grid, generator=per_sample_generators([1, 2, 3]))
    with pytest.raises(ValueError, match="non-finite"):
        sample("ddim", gmm_vp, torch.full((2, 2), float("nan")), grid)
    masked = DiscreteOracle(torch.ones(4), vocab_size=2, length=2).denoiser()
    with pytest.raises(TypeError, match="Gaussian `process`"):
        sample("ddim", masked, torch.zeros(2, 2, dtype=torch.long), grid)
    with pytest.raises(TypeError, match=r"needs a denoiser whose `process` is\s+Masked"):
        sample("first_hitting", gmm_vp, x, grid)
    with pytest.raises(TypeError, match="integer token tensors"):
        sample("masked_ancestral", masked, x, make_grid(Masked(vocab_size=2), 3, "uniform_t"))


def test_cli_list():
    from sciffusion.solvers.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    res = runner.invoke(app, ["list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in SOLVERS:
        assert name in res.output
    assert "2n-1" in res.output and "adaptive" in res.output
    res = runner.invoke(app, ["list", "--kind", "discrete"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "maskgit" in res.output and "dpmpp_2m" not in res.output
    res = runner.invoke(app, ["list", "--kind", "quantum"], env={"COLUMNS": "250"})
    assert res.exit_code != 0 and "unknown kind" in res.output
