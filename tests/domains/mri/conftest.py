"""MRI tests run single-threaded: their tensors are small (<= 256^2), where one thread is as fast
as two, and intra-op threads on a shared or busy 2-core machine can stall small ops by
milliseconds each (measured: a phantom batch took 15 s with 2 busy threads, 0.3 s with 1)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_prior(kind: str, *, seed: int = 0):
    """An untrained prior of ``kind`` on a tiny space-to-depth UNet (base 8): code paths only."""
    from sciffusion.domains.mri.prior import MRIPrior, PriorRecipe, build_module

    torch.manual_seed(seed)
    module = build_module(PriorRecipe(prior=kind, base=8, mults=[1, 2], seed=seed))
    den = module.denoiser()
    den.net.eval()
    return MRIPrior(den, kind, None, {})


@pytest.fixture(scope="session")
def tiny_prior():
    """Factory ``tiny_prior(kind)`` of untrained tiny priors (see ``_tiny_prior``)."""
    return _tiny_prior
