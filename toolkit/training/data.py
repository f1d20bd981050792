"""Tensors or dicts of tensors as a Dataset / DataLoader for :func:`sciffusion.training.fit`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

__all__ = ["TensorDictDataset", "make_loader"]


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

    Shuffling uses its own generator seeded with ``seed``; a batch size above the dataset size is
    reduced to it.
    """
    if isinstance(data, DataLoader):
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    ds = data if isinstance(data, Dataset) else TensorDictDataset(data)
    try:
        batch_size = min(batch_size, len(ds))  # type: ignore[arg-type]
    except TypeError:
        pass
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(int(seed)),
    )
