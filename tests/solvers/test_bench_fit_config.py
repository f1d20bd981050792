"""The benchmark's fitted configuration (``sciffusion.solvers.bench.fit_config``) is chosen on
calibration paths only: screened on the first ``SCREEN`` of them, the ``KEEP`` best re-scored on
all ``FINAL``."""

from __future__ import annotations

import torch
from sciffusion.solvers import bench


def test_fit_config_rescores_on_all_calibration_paths_and_never_sees_test_paths(monkeypatch):
    p = bench.make_problem(2, "sharp", 16)
    seen = []
    cands = [
        bench.Config("unipc_bh2_2", "karras", end, skip)
        for end in (0.002, 0.1, 0.3)
        for skip in (None, 5.0)
    ]
    monkeypatch.setattr(bench, "_candidates", lambda fast: cands)
    monkeypatch.setattr(bench, "SCREEN_FAST", 8)
    monkeypatch.setattr(bench, "FINAL_FAST", 64)
    monkeypatch.setattr(bench, "KEEP", 3)
    call = bench.Config.__call__

    def spy(self, prob, x, nfe):
        seen.append(x)
        return call(self, prob, x, nfe)

    monkeypatch.setattr(bench.Config, "__call__", spy)
    best = bench.fit_config(p, 5, fast=True)
    monkeypatch.setattr(bench.Config, "__call__", call)
    x, ref = p.calibration(64)
    assert all(float(torch.cdist(s, p.x).min()) > 0 for s in seen)  # no test path is run
    assert sum(s.shape[0] == 8 for s in seen) == len(cands)
    assert sum(s.shape[0] == 64 for s in seen) == 3
    screen = sorted(cands, key=lambda c: bench.rmse(c(p, x[:8], 5), ref[:8]))[:3]
    final = {c: bench.rmse(c(p, x, 5), ref) for c in screen}
    assert best == min(final, key=final.get)
