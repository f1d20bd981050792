"""Shared fixtures. Tests never rely on global RNG state: each draws from its own generator."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("SCIFFUSION_FAST", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh, seeded CPU generator."""
    return torch.Generator().manual_seed(1234)
