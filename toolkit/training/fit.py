"""``fit``: train a :class:`DiffusionModule` with a plain Lightning ``Trainer``, resumably.

No experiment logger, no ``lightning_logs/`` folder: the one file written is
``ckpt_dir/last.ckpt`` (every ``ckpt_every`` steps and at the end, replaced atomically), which
``resume=True`` continues from. Weights to ship go through :func:`sciffusion.io.save_pretrained`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .data import EpochSampler, make_loader
from .module import DiffusionModule

__all__ = ["LastCheckpoint", "StepProgress", "fit"]

CKPT_NAME = "last.ckpt"


class StepProgress(pl.callbacks.ProgressBar):
    """One bar over the optimizer steps of the whole run (``step k/max_steps``, loss, rate).

    Lightning's default bars count epochs; ``fit`` is step-based (``max_epochs=-1``), for which
    the rich bar prints ``Epoch 7/-2``. A resumed run starts the bar at its restored step.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=int(trainer.max_steps),
            initial=int(trainer.global_step),
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 15.0,  # a log file gets a line per 15 s
            disable=not (self._enabled and trainer.is_global_zero),
        )

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(int(trainer.global_step) - self._bar.n)
        loss = trainer.progress_bar_metrics.get("loss")
        if loss is not None:
            self._bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, *_: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LastCheckpoint(pl.Callback):
    """Save ``dirpath/last.ckpt`` every ``every`` optimizer steps and when training ends.

    Written to a temporary file by rank 0 and moved into place, so an interrupted save never
    leaves a truncated checkpoint behind.
    """

    def __init__(self, dirpath: str | os.PathLike, every: int) -> None:
        if every < 1:
            raise ValueError(f"ckpt_every must be >= 1; got {every}")
        self.path = Path(dirpath) / CKPT_NAME
        self.every = int(every)
        self._saved_at = -1

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.global_step == self._saved_at:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("sciffusion-ckpt-dir")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("sciffusion-ckpt-saved")
        self._saved_at = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)


class _DropAdverts(logging.Filter):
    """Drop Lightning's advertisements and notes that say nothing about this run."""

    # "stopped: `max_steps=N` reached" is what StepProgress already shows
    NOISE = ("litlogger", "litmodels", "`weights_only` was not set", "stopped: `max_steps=")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(n in msg for n in self.NOISE)


@contextlib.contextmanager
def _quiet(progress: bool, exact_resume: bool = False) -> Iterator[None]:
    names = ("pytorch_lightning", "lightning_fabric", "lightning")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    drop = _DropAdverts()
    handlers = [h for lg in loggers for h in lg.handlers]
    for h in handlers:
        h.addFilter(drop)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*litlogger.*|.*litmodels.*")
        warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode.*")  # the EMA copy
        warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning vs torch 2.11 pytree
        if exact_resume:  # make_loader's EpochSampler continues mid-epoch exactly
            warnings.filterwarnings("ignore", ".*your dataloader is not resumable.*")
        if not progress:
            for lg in loggers:
                lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
            for h in handlers:
                h.removeFilter(drop)


def _resume_order(loader: DataLoader, ckpt_path: str, accumulate: int) -> None:
    """Start ``loader``'s sampler where the checkpointed run stopped (set before Lightning makes
    its first iterator, which worker processes start reading at once)."""
    import torch

    step = int(torch.load(ckpt_path, map_location="cpu", weights_only=True)["global_step"])
    loader.sampler.resume(step * int(accumulate), int(loader.batch_size or 1), loader.drop_last)


def fit(
    module: DiffusionModule,
    data: Tensor | Mapping[str, Any] | Dataset | DataLoader,
    *,
    max_steps: int,
    batch_size: int,
    devices: int | str | Sequence[int] = 1,
    num_nodes: int = 1,
    strategy: str | Any = "auto",
    accelerator: str = "auto",
    ckpt_dir: str | os.PathLike | None = None,
    ckpt_every: int = 1000,
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    gradient_clip_val: float | None = None,
    precision: str | int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """Train ``module`` for ``max_steps`` optimizer steps; return the ``Trainer``.

    Parameters
    ----------
    data
        A tensor ``x0``, a dict ``{"x0", "cond"?, "mask"?, "mu"?}`` of tensors with a shared
        sample dimension, a Dataset yielding those, or a ready DataLoader (then ``batch_size``
        and the shuffling seed are its own).
    devices, num_nodes, strategy, accelerator
        Passed to ``pytorch_lightning.Trainer`` (``strategy="ddp"`` for several processes; on CPU
        it uses gloo). Each rank draws its own noise (``seed + global_rank``).
    ckpt_dir, ckpt_every, resume
        Write ``ckpt_dir/last.ckpt`` every ``ckpt_every`` steps and at the end. An existing one
        is continued with ``resume=True`` and refused otherwise; ``resume=True`` without one
        starts from scratch.
    seed
        ``seed_everything(seed, workers=True)``, the shuffling order and the module's noise seed.
    trainer_kwargs
        Any other ``Trainer`` argument (e.g. ``accumulate_grad_batches``).
    """
    if not isinstance(module, DiffusionModule):
        raise TypeError(f"fit trains a DiffusionModule; got {type(module).__name__}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1; got {max_steps}")
    ckpt_path = None
    cbs = list(callbacks)
    if ckpt_dir is not None:
        last = Path(ckpt_dir) / CKPT_NAME
        if last.exists() and not resume:
            raise FileExistsError(
                f"{last} exists from an earlier run; pass resume=True (--resume) to continue it,"
                " or choose another ckpt_dir"
            )
        ckpt_path = str(last) if last.exists() else None
        cbs.append(LastCheckpoint(ckpt_dir, ckpt_every))
    if progress and not any(isinstance(cb, pl.callbacks.ProgressBar) for cb in cbs):
        cbs.append(StepProgress())
    loader = make_loader(data, batch_size=batch_size, seed=seed, num_workers=num_workers)
    one_process = num_nodes == 1 and (
        str(devices) == "1" or (isinstance(devices, Sequence) and len(devices) == 1)
    )  # several processes: Lightning swaps in a DistributedSampler
    exact_resume = isinstance(loader.sampler, EpochSampler) and one_process
    if ckpt_path is not None and exact_resume:
        _resume_order(loader, ckpt_path, trainer_kwargs.get("accumulate_grad_batches", 1))
    with _quiet(progress, exact_resume):
        pl.seed_everything(seed, workers=True, verbose=False)
        module.seed = int(seed)
        module.reset_generator()
        trainer = pl.Trainer(
            max_steps=max_steps,
            max_epochs=-1,
            devices=devices,
            num_nodes=num_nodes,
            strategy=strategy,
            accelerator=accelerator,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            gradient_clip_val=gradient_clip_val,
            precision=precision,
            callbacks=cbs,
            default_root_dir=str(ckpt_dir) if ckpt_dir is not None else None,
            **trainer_kwargs,
        )
        trainer.fit(module, loader, ckpt_path=ckpt_path, weights_only=True)
    return trainer
