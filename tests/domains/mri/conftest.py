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
