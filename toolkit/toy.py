"""The core's end-to-end job: learn a 2-D Gaussian mixture, sample it, compare with exact samples.

Train a small MLP denoiser with Lightning (:class:`sciffusion.training.DiffusionModule`), sample it
with any registered solver, and report the sliced Wasserstein distance to exact samples next to the
floor measured between exact sample sets of the same size, plus the mode weights. The exact
mixture (:func:`sciffusion.oracles.toy_gmm`) is the ground truth, so every number is checkable.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ._files import atomic_path, atomic_write_text

__all__ = ["ToyConfig", "evaluate_toy", "plot_toy", "sample_toy", "toy_mixture", "train_toy"]


@dataclass
class ToyConfig:
    """Settings of ``sciffusion toy`` (and of ``sciffusion demo``'s first part)."""

    kind: str = "smooth"  # mixture: smooth | sharp (docs/notes benchmark mixtures)
    n_components: int = 8
    mixture_seed: int = 0
    process: str = "vp-cosine"
    prediction: str = "v"
    width: int = 128  # MLP hidden width
    depth: int = 3
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.999
    n_train: int = 100_000
    solver: str = "dpmpp_2m"
    nfe: int = 40
    n_samples: int = 4000
    n_reference: int = 5  # exact reference sets for the distance and its floor
    seed: int = 0
    fast: bool = False
    # torch CPU threads: the 2->128x3 MLP at batch 256 gains nothing from more, and extra threads
    # spin against other work (2.5x slower per step at 2 threads on a busy 2-core machine)
    threads: int = 1

    def effective(self) -> ToyConfig:
        """The config actually run: ``fast`` caps training and sampling sizes for smoke runs."""
        if not self.fast:
            return self
        return replace(
            self,
            steps=min(self.steps, 200),
            n_samples=min(self.n_samples, 1000),
            n_train=min(self.n_train, 20_000),
        )


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (``n <= 0``: leave torch's setting), then restore it."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def toy_mixture(cfg: ToyConfig):
    from .oracles import toy_gmm

    return toy_gmm(2, cfg.kind, n_components=cfg.n_components, seed=cfg.mixture_seed)


def train_toy(
    cfg: ToyConfig,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Train the toy denoiser: checkpoints in ``out_dir/checkpoints``, weights in ``model/``.

    An earlier run's checkpoints are continued with ``resume``, discarded with ``force`` (a fresh
    run), and otherwise an error.
    """
    from .io import save_pretrained
    from .nets import MLP
    from .processes import make_process
    from .training import DiffusionModule, fit

    cfg = cfg.effective()
    out_dir = Path(out_dir)
    if force and not resume:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    gm = toy_mixture(cfg)
    data = gm.sample(cfg.n_train, generator=torch.Generator().manual_seed(cfg.seed + 1)).float()
    net = MLP(2, hidden=cfg.width, depth=cfg.depth)
    module = DiffusionModule(
        net,
        make_process(cfg.process),
        prediction=cfg.prediction,
        lr=cfg.lr,
        ema_decay=cfg.ema_decay,
        seed=cfg.seed,
    )
    with _threads(cfg.threads):
        fit(
            module,
            data,
            max_steps=cfg.steps,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            accelerator=device,
            ckpt_dir=out_dir / "checkpoints",
            resume=resume,
            progress=progress,
        )
    save_pretrained(module, out_dir / "model", force=True)
    return out_dir / "model"


def sample_toy(
    model_dir: str | Path,
    cfg: ToyConfig,
    *,
    device: str = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``cfg.n_samples`` samples with ``cfg.solver`` at ``cfg.nfe`` steps (log-SNR grid)."""
    from . import solvers
    from .io import from_pretrained

    cfg = cfg.effective()
    denoiser = from_pretrained(model_dir, device=device).eval()
    proc = denoiser.process
    g = torch.Generator(device="cpu").manual_seed(cfg.seed + 2)
    x = proc.prior_sample((cfg.n_samples, 2), generator=g).to(device)
    grid = solvers.make_grid(proc, cfg.nfe)
    with torch.no_grad(), _threads(cfg.threads):
        return solvers.sample(cfg.solver, denoiser, x, grid, progress=progress).cpu()


def evaluate_toy(samples: torch.Tensor, cfg: ToyConfig) -> dict[str, Any]:
    """Sliced W2 to exact samples vs the exact-vs-exact floor (same size), and mode weights."""
    from .metrics import sliced_wasserstein

    cfg = cfg.effective()
    gm = toy_mixture(cfg)
    n = samples.shape[0]
    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    refs = [gm.sample(n, generator=g) for _ in range(cfg.n_reference + 1)]
    sw_model, sw_floor = [], []
    for k in range(cfg.n_reference):
        proj = torch.Generator().manual_seed(20_000 + k)
        sw_model.append(sliced_wasserstein(samples.double(), refs[k], generator=proj))
        proj = torch.Generator().manual_seed(20_000 + k)
        sw_floor.append(sliced_wasserstein(refs[-1], refs[k], generator=proj))
    sw, floor = sum(sw_model) / len(sw_model), sum(sw_floor) / len(sw_floor)
    weights = gm.mode_weights(samples.double())
    return {
        "n_samples": n,
        "sliced_w2": sw,
        "sliced_w2_floor": floor,
        "ratio_to_floor": sw / floor,
        "mode_weights": [round(float(w), 4) for w in weights],
        "true_weights": [round(float(w), 4) for w in gm.weights],
        "mode_weight_tv": gm.mode_weight_tv(samples.double()),
    }


def plot_toy(samples: torch.Tensor, cfg: ToyConfig, metrics: dict[str, Any], path) -> Path:
    """Scatter of generated vs exact samples and the mode weights, saved as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gm = toy_mixture(cfg.effective())
    exact = gm.sample(samples.shape[0], generator=torch.Generator().manual_seed(7))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, pts, title in ((axes[0], exact, "exact samples"), (axes[1], samples, "generated")):
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.set_xlim(-1.8, 1.8)
        ax.set_ylim(-1.8, 1.8)
    k = range(len(metrics["true_weights"]))
    axes[2].bar([i - 0.2 for i in k], metrics["true_weights"], width=0.4, label="true")
    axes[2].bar([i + 0.2 for i in k], metrics["mode_weights"], width=0.4, label="generated")
    axes[2].set_title(f"mode weights (TV {metrics['mode_weight_tv']:.3f})")
    axes[2].legend()
    fig.suptitle(
        f"sliced W2 {metrics['sliced_w2']:.4f} vs floor {metrics['sliced_w2_floor']:.4f}"
        f" (ratio {metrics['ratio_to_floor']:.2f})"
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def run_toy(
    cfg: ToyConfig,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Train, sample, evaluate and plot into ``out_dir``; returns the metrics (metrics.json)."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    model_dir = train_toy(
        cfg, out_dir, device=device, resume=resume, progress=progress, force=force
    )
    t1 = time.perf_counter()
    samples = sample_toy(model_dir, cfg, device=device)
    t2 = time.perf_counter()
    metrics = evaluate_toy(samples, cfg)
    metrics.update(train_seconds=round(t1 - t0, 1), sample_seconds=round(t2 - t1, 2))
    save_samples(samples, out_dir / "samples.npy")
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    plot_toy(samples, cfg, metrics, out_dir / "toy.png")
    return metrics


def save_samples(samples: torch.Tensor, path: str | Path, *, force: bool = True) -> Path:
    import numpy as np

    with atomic_path(path, force=force) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, samples.numpy())
    return Path(path)


def load_samples(path: str | Path) -> torch.Tensor:
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no samples file at {p}; run `sciffusion toy sample` first")
    arr = np.load(p, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{p} holds an array of shape {arr.shape}; toy samples are (N, 2)")
    return torch.from_numpy(arr)
