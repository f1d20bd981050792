"""Diffusion priors for MRI, trained with the core's ``DiffusionModule`` on simulated phantoms.

Three kinds, all on complex images as two real channels (:mod:`.channels`) normalised by
:func:`~.scaling.intensity_scale` (computed from a freshly drawn undersampled acquisition of each
training image, exactly as at reconstruction time):

``uncond``
    ``p(x)``: a VP-cosine v-prediction UNet; reconstruction adds data consistency or guidance.
``cond``
    ``p(x | A^H y)``: the same UNet with the zero-filled image as two extra input channels,
    trained with random masks at 4x and 8x (Alsubaie et al. 2025); reconstruction adds DC.
``irsde``
    Mean-reverting restoration (IR-SDE, Luo et al. 2023) from the zero-filled image ``mu`` to the
    fully sampled one, EDM-preconditioned (Karras et al. 2022) in the mean-shifted frame;
    sampled with the MR Sampler (MaRS, Li et al. 2025).

A training pair is drawn on the fly for every sample: a mask (``random``, ``equispaced_fraction``
or ``gaussian``; 4x with centre fraction 0.08 or 8x with 0.04), complex k-space noise with std
``U[0, 2 sigma]``, the zero-filled image and the scale. ``sciffusion mri train --prior KIND``
runs :func:`train_prior`; the shipped checkpoints (``checkpoints/KIND_64``) came from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .channels import image_to_channels
from .fourier import fft2c, ifft2c
from .masks import make_mask
from .scaling import intensity_scale

__all__ = [
    "PRIOR_KINDS",
    "SHIPPED",
    "MRIPrior",
    "PairDataset",
    "PriorRecipe",
    "build_module",
    "checkpoint_dir",
    "load_prior",
    "prior_kind",
    "train_prior",
]

PRIOR_KINDS = ("uncond", "cond", "irsde")
#: shipped checkpoint folder (under ``domains/mri/checkpoints``) per prior kind
SHIPPED = {"uncond": "uncond_64", "cond": "cond_64", "irsde": "irsde_64"}
INFO_NAME = "mri.json"
#: (acceleration, centre fraction) pairs of the training masks (fastMRI knee conventions)
TRAIN_RATES = ((4.0, 0.08), (8.0, 0.04))
TRAIN_MASKS = ("random", "equispaced_fraction", "gaussian")


@dataclass
class PriorRecipe:
    """Everything ``sciffusion mri train`` needs (saved as ``config.toml`` and ``mri.json``).

    The defaults are the shipped recipe: a 1.16M-parameter space-to-depth UNet
    (:class:`~.net.SpaceToDepthUNet`), 64x64 single-coil phantoms, 1200 steps of batch 16, sized to
    train in about 15-20 minutes on one CPU thread (0.55-0.8 s per step measured on a shared
    2-core machine). The shipped ``irsde`` prior ran 1000 steps (time budget); each checkpoint's
    ``mri.json`` records the recipe it actually ran and its training time.
    """

    prior: str = "uncond"  # uncond | cond | irsde
    size: int = 64
    n_train: int = 4000  # simulated phantoms (each seen with fresh masks and noise)
    steps: int = 1200
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    base: int = 32
    mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    sigma: float = 0.01  # k-space noise std of the simulated acquisitions (image max 1)
    max_sigma: float = 0.5  # IR-SDE stationary std (normalised units: images have RMS ~1)
    seed: int = 0
    fast: bool = False

    def effective(self) -> PriorRecipe:
        """The recipe actually run: ``fast`` shrinks it to a smoke run (seconds)."""
        if not self.fast:
            return self
        return PriorRecipe(
            **{
                **asdict(self),
                "n_train": min(self.n_train, 64),
                "steps": min(self.steps, 20),
                "batch_size": min(self.batch_size, 8),
                "base": 8,
                "mults": [1, 2],
                "fast": False,
            }
        )

    def check(self) -> PriorRecipe:
        if self.prior not in PRIOR_KINDS:
            raise ValueError(f"unknown prior {self.prior!r}; choose one of {PRIOR_KINDS}")
        if self.size < 8 or self.n_train < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                "size must be >= 8 and n_train, steps, batch_size >= 1; got"
                f" size={self.size}, n_train={self.n_train}, steps={self.steps},"
                f" batch_size={self.batch_size}"
            )
        return self


def _process(recipe: PriorRecipe):
    from sciffusion.processes import MeanReverting, VPCosine

    if recipe.prior == "irsde":
        return MeanReverting(max_sigma=recipe.max_sigma)
    return VPCosine()


def build_module(recipe: PriorRecipe):
    """The ``DiffusionModule`` (net, process, prediction, optimiser settings) of a recipe."""
    from sciffusion.training import DiffusionModule

    from .net import SpaceToDepthUNet

    recipe = recipe.check()
    net = SpaceToDepthUNet(
        2,
        factor=2,
        base=recipe.base,
        mults=list(recipe.mults),
        num_res_blocks=1,
        mid_attention=True,
        groups=min(8, recipe.base),
        cond_channels=0 if recipe.prior == "uncond" else 2,
    )
    return DiffusionModule(
        net,
        _process(recipe),
        # irsde: EDM preconditioning in the mean-shifted frame, so an untrained net already returns
        # mu at high noise and x at low noise; the VP priors predict v
        prediction="edm" if recipe.prior == "irsde" else "v",
        sigma_data=0.5 if recipe.prior == "irsde" else 0.7,  # residual x0 - mu vs images (RMS 1)
        lr=recipe.lr,
        warmup_steps=recipe.warmup_steps,
        ema_decay=recipe.ema_decay,
        seed=recipe.seed,
    )


class PairDataset(Dataset):
    """Training samples for a prior kind, drawn on the fly from complex images ``(N, H, W)``.

    Item ``i`` (its ``k``-th draw; key ``(i, k)`` from :func:`sciffusion.training.make_loader`,
    whose sampler passes the epoch as ``k``, so a resumed run draws what an uninterrupted one
    would) uses a generator seeded by ``(seed, i, k)``: a mask (kind and
    rate uniform over :data:`TRAIN_MASKS` x :data:`TRAIN_RATES`), noise ``sigma' ~ U[0, 2 sigma]``,
    ``y = M (F x + sigma' n)``, ``s = intensity_scale(y)``. Returns ``{"x0": x / s}`` (uncond),
    ``{"x0", "cond": A^H y / s}`` (cond) or ``{"x0", "mu": A^H y / s}`` (irsde), channels
    ``(2, H, W)``.
    """

    def __init__(self, images: Tensor, *, prior: str, sigma: float, seed: int = 0) -> None:
        if prior not in PRIOR_KINDS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {PRIOR_KINDS}")
        if not images.is_complex() or images.ndim != 3:
            raise ValueError(f"images must be complex (N, H, W); got {tuple(images.shape)}")
        self.images, self.prior, self.sigma, self.seed = images, prior, float(sigma), int(seed)
        self.kspace = fft2c(images)
        self.draws = [0] * images.shape[0]

    def __len__(self) -> int:
        return self.images.shape[0]

    def pair(self, i: int, generator: torch.Generator) -> dict[str, Tensor]:
        """One draw for image ``i`` from ``generator`` (see the class docstring)."""
        k = self.kspace[i]
        w = k.shape[-1]
        kind = TRAIN_MASKS[int(torch.randint(len(TRAIN_MASKS), (1,), generator=generator))]
        acc, cf = TRAIN_RATES[int(torch.randint(len(TRAIN_RATES), (1,), generator=generator))]
        mask = make_mask(kind, w, acceleration=acc, center_fraction=cf, generator=generator).mask
        sig = 2 * self.sigma * float(torch.rand(1, generator=generator))
        noise = torch.randn((*k.shape, 2), generator=generator, dtype=k.real.dtype)
        y = (k + sig * torch.view_as_complex(noise)) * mask.to(k.real.dtype)
        s = intensity_scale(y[None], mask)[0]
        out = {"x0": image_to_channels(self.images[i][None] / s)[0]}
        if self.prior != "uncond":
            zf = image_to_channels(ifft2c(y)[None] / s)[0]
            out["cond" if self.prior == "cond" else "mu"] = zf
        return out

    epoch_keys = True  # make_loader yields (index, epoch) keys

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        if isinstance(key, tuple):
            i, k = int(key[0]), int(key[1])
        else:
            i, k = int(key), self.draws[int(key)]
            self.draws[i] += 1
        g = torch.Generator().manual_seed(hash((self.seed, i, k)) % (2**63))
        return self.pair(i, g)


def train_prior(
    recipe: PriorRecipe,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    log_every: int = 0,
) -> Path:
    """Simulate phantoms, train the prior, save it to ``out_dir/model`` (+ ``mri.json``).

    ``out_dir/checkpoints/last.ckpt`` allows ``resume``. The recipe, the training time and the
    seconds per step are written to ``model/mri.json``. ``log_every > 0`` prints the step, the
    loss and the seconds per step every ``log_every`` steps (for log files). Returns the model
    folder.
    """
    from sciffusion.datasets.mri.phantoms import simulate_phantoms
    from sciffusion.io import save_pretrained
    from sciffusion.training import fit

    recipe = recipe.effective().check()
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(recipe.seed)
    images = simulate_phantoms(recipe.n_train, recipe.size, generator=g).image
    data = PairDataset(images, prior=recipe.prior, sigma=recipe.sigma, seed=recipe.seed)
    t_data = time.perf_counter() - t0
    module = build_module(recipe)
    t1 = time.perf_counter()
    fit(
        module,
        data,
        max_steps=recipe.steps,
        batch_size=recipe.batch_size,
        seed=recipe.seed,
        accelerator=device,
        ckpt_dir=out_dir / "checkpoints",
        ckpt_every=max(recipe.steps // 5, 1),
        resume=resume,
        progress=progress,
        callbacks=[_StepLog(log_every, recipe.steps)] if log_every > 0 else [],
    )
    t_fit = time.perf_counter() - t1
    model_dir = save_pretrained(module, out_dir / "model", force=True)
    info = {
        "prior": recipe.prior,
        "size": recipe.size,
        "normalisation": "intensity_scale (RMS of the calibration-block image)",
        "recipe": asdict(recipe),
        "parameters": sum(p.numel() for p in module.net.parameters()),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "seconds_data": round(t_data, 1),
        "seconds_train": round(t_fit, 1),
        "seconds_per_step": round(t_fit / recipe.steps, 4),
    }
    from sciffusion._files import atomic_write_text

    atomic_write_text(model_dir / INFO_NAME, json.dumps(info, indent=2) + "\n")
    return model_dir


def _StepLog(every: int, total: int):
    """A Lightning callback printing ``step/total loss s/step`` every ``every`` steps."""
    import pytorch_lightning as pl

    class StepLog(pl.Callback):
        def __init__(self) -> None:
            self.t = time.perf_counter()
            self.last = 0

        def on_train_batch_end(self, trainer, *args: Any) -> None:
            step = trainer.global_step
            if step % every and step != total:
                return
            now = time.perf_counter()
            per = (now - self.t) / max(step - self.last, 1)
            loss = float(trainer.callback_metrics.get("loss", float("nan")))
            print(f"step {step}/{total} loss {loss:.4f} {per:.3f} s/step", flush=True)
            self.t, self.last = now, step

    return StepLog()


class MRIPrior(NamedTuple):
    """A loaded prior: the denoiser, its kind, training image size and the recipe info."""

    denoiser: Any
    kind: str
    size: int | None
    info: dict[str, Any]


def checkpoint_dir(name: str) -> Path:
    """Folder of a shipped checkpoint (``uncond``, ``cond``, ``irsde``) inside the package."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped prior {name!r}; shipped: {sorted(SHIPPED)}")
    return Path(__file__).parent / "checkpoints" / SHIPPED[name]


def prior_kind(denoiser) -> str:
    """``uncond`` / ``cond`` / ``irsde`` from the process and the net's condition channels."""
    if getattr(denoiser.process, "has_mean", False):
        return "irsde"
    return "cond" if int(getattr(denoiser.net, "cond_channels", 0)) > 0 else "uncond"


def load_prior(name_or_path: str | Path, *, device: str | torch.device = "cpu") -> MRIPrior:
    """Load a shipped prior by kind (``"uncond"``, ``"cond"``, ``"irsde"``) or any folder written by
    :func:`train_prior` / ``save_pretrained`` (the ``model`` folder or the run folder above it)."""
    from sciffusion.io import CONFIG_NAME, from_pretrained

    from . import net as _registers_mri_s2d_unet  # noqa: F401  (from_pretrained rebuilds it)

    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        folder = checkpoint_dir(name_or_path)
        if not (folder / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"the shipped {name_or_path!r} prior is missing ({folder}); retrain it with"
                f" `sciffusion mri train --prior {name_or_path}` and pass --model"
            )
    else:
        folder = Path(name_or_path)
        if (folder / "model" / CONFIG_NAME).is_file():
            folder = folder / "model"
    den = from_pretrained(folder, device=device)
    info: dict[str, Any] = {}
    if (folder / INFO_NAME).is_file():
        info = json.loads((folder / INFO_NAME).read_text())
    return MRIPrior(den, prior_kind(den), info.get("size"), info)


def describe(recipe: PriorRecipe) -> dict[str, Any]:
    """Parameter count of the recipe's net (for the CLI summary)."""
    module = build_module(recipe.effective())
    return {"parameters": sum(p.numel() for p in module.net.parameters())}
