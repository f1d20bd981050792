"""Tensors or dicts of tensors as a Dataset / DataLoader for :func:`sciffusion.training.fit`."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochSampler", "TensorDictDataset", "make_loader"]


class TensorDictDataset(Dataset):
    """Samples of a tensor ``x0 (n, ...)`` or of a dict of tensors sharing the first dim.

    Item ``i`` is ``x0[i]`` or ``{key: value[i]}``; nested dicts (e.g. ``{"cond": {...}}``) are
    indexed recursively, so the default collate rebuilds batches of the same structure.
    """

    def __init__(self, data: Tensor | Mapping[str, Any]) -> None:
        self.data = data
        sizes: set[int] = set()
        _sizes(data, "data", sizes)
        if len(sizes) != 1:
            raise ValueError(
                f"all tensors must share their first (sample) dimension; got sizes {sorted(sizes)}"
            )
        (self.n,) = sizes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return _index(self.data, i)


def _sizes(data: Any, name: str, out: set[int]) -> None:
    if isinstance(data, Tensor):
        if data.ndim == 0:
            raise ValueError(f"{name} is a scalar; every entry needs a sample dimension")
        out.add(data.shape[0])
    elif isinstance(data, Mapping):
        if not data:
            raise ValueError(f"{name} is an empty dict")
        for k, v in data.items():
            _sizes(v, f"{name}[{k!r}]", out)
    else:
        raise TypeError(f"{name} must be a tensor or a dict of tensors; got {type(data).__name__}")


def _index(data: Any, i: int) -> Any:
    if isinstance(data, Tensor):
        return data[i]
    return {k: _index(v, i) for k, v in data.items()}


class EpochSampler(Sampler[int]):
    """Index order of epoch ``e``: a permutation seeded by ``(seed, e)`` (or ``0..n-1``).

    Because each epoch's order is a function of its number, training resumed from a checkpoint
    taken mid-epoch sees exactly the batches an uninterrupted run would: :func:`fit` calls
    :meth:`resume` with the batches already consumed, and the next epoch starts after them.
    Lightning calls :meth:`set_epoch` before every epoch; iterated by hand, the epoch advances by
    one per pass. With ``keyed`` it yields ``(index, epoch)`` keys, for datasets that draw
    randomly per item (``epoch_keys = True``): their draws then follow the epoch too.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, keyed: bool = False) -> None:
        self.n, self.seed, self.shuffle, self.keyed = int(n), int(seed), bool(shuffle), bool(keyed)
        self.epoch = 0
        self._resume: tuple[int, int, int] | None = None  # (batches done, per epoch, batch size)
        self._shift, self._align = 0, False

    def set_epoch(self, epoch: int) -> None:
        # After resume() the step count decides the epoch; the caller's count may be one ahead
        # (Lightning's, when the checkpoint was written at the end of training), so keep the
        # difference for later epochs too.
        if self._align:
            self._shift, self._align = self.epoch - int(epoch), False
        self.epoch = int(epoch) + self._shift

    def resume(self, batches_done: int, batch_size: int, drop_last: bool = False) -> None:
        """Continue after ``batches_done`` batches (over all epochs): set the epoch they reached
        and skip the part of it already consumed (once)."""
        per_epoch = max(self.n // batch_size if drop_last else math.ceil(self.n / batch_size), 1)
        self._resume = (int(batches_done), per_epoch, int(batch_size))
        self.epoch, self._shift, self._align = int(batches_done) // per_epoch, 0, True

    def order(self, epoch: int) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(((self.seed & 0xFFFFFFFF) << 32) | (epoch & 0xFFFFFFFF))
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[Any]:
        epoch, start = self.epoch, 0
        self.epoch += 1
        if self._resume is not None:
            done, per_epoch, batch_size = self._resume
            self._resume = None
            start = max(0, done - epoch * per_epoch) * batch_size
        order = self.order(epoch)[start:].tolist()
        yield from ((i, epoch) for i in order) if self.keyed else order

    def __len__(self) -> int:
        return self.n


def make_loader(
    data: Tensor | Mapping[str, Any] | Dataset | DataLoader,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader over tensors, dicts of tensors or a Dataset (a DataLoader is returned as is).

    The order comes from an :class:`EpochSampler` (epoch ``e`` shuffled by ``(seed, e)``), so a
    resumed run continues exactly; a batch size above the dataset size is reduced to it.
    """
    if isinstance(data, DataLoader):
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    ds = data if isinstance(data, Dataset) else TensorDictDataset(data)
    try:
        n = len(ds)  # type: ignore[arg-type]
    except TypeError:  # an iterable-style dataset keeps its own order
        n = None
    if n is not None:
        batch_size = min(batch_size, n)
    return DataLoader(
        ds,
        batch_size=batch_size,
        sampler=None
        if n is None
        else EpochSampler(n, seed=seed, shuffle=shuffle, keyed=getattr(ds, "epoch_keys", False)),
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(int(seed)),
    )
