"""Training (contract 6): ``DiffusionModule`` (pytorch_lightning), ``fit``, and the loss pieces.

>>> module = DiffusionModule(net, process, prediction="v", weighting="min-snr", cond_dropout=0.1)
>>> fit(module, {"x0": x0, "cond": c}, max_steps=10_000, batch_size=64, ckpt_dir="run/")
>>> save_pretrained(module, "run/model")          # EMA weights + JSON config (sciffusion.io)

Importing this package imports pytorch_lightning; ``import sciffusion`` does not.
"""

from .data import TensorDictDataset, make_loader
from .fit import LastCheckpoint, fit
from .losses import (
    TIME_SAMPLINGS,
    WEIGHTINGS,
    drop_condition,
    ema_decay_at,
    immiscible_assign,
    loss_weight,
    native_target,
    remove_mean,
    sample_time,
    x0_weight,
)
from .module import DiffusionModule, unpack_batch

__all__ = [
    "TIME_SAMPLINGS",
    "WEIGHTINGS",
    "DiffusionModule",
    "LastCheckpoint",
    "TensorDictDataset",
    "drop_condition",
    "ema_decay_at",
    "fit",
    "immiscible_assign",
    "loss_weight",
    "make_loader",
    "native_target",
    "remove_mean",
    "sample_time",
    "unpack_batch",
    "x0_weight",
]
