"""What every sciffusion network shares: a rebuildable config, a registry, condition routing.

A network is ``net(x, c_noise, cond=None) -> out`` with ``out`` shaped like ``x`` (token networks
return logits ``(B, L, V)``). ``c_noise = process.noise_cond(t)`` has shape ``(B,)``.

**Conditions.** ``cond`` is ``None``, a tensor, or a mapping; every net reads it the same way
(:func:`split_cond`):

- a tensor of rank 2, ``(B, C)``, is the *vector* condition (class embedding, observation,
  parameters), used by FiLM / adaLN;
- a tensor of rank >= 3 is the *channel* condition, concatenated to the input: ``(B, Cc, *S)`` for
  UNets (e.g. a zero-filled MRI image), ``(B, N, Fc)`` per element for the Transformer;
- a mapping may hold ``"vector"``, ``"channels"``, ``"mask"`` (``(B, N)`` bool, True = real
  element), ``"mu"`` (the mean of a mean-reverting process, used as the channel condition when no
  ``"channels"`` is given) and ``"cond"`` (a tensor routed as above, or a mapping merged in).

A missing condition is the *null* condition, zeros: what conditioning dropout feeds in training
and what :func:`sciffusion.guidance.cfg` passes as its unconditional branch.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["NETS", "Net", "NetCond", "build_net", "register_net", "split_cond"]

_COND_KEYS = ("cond", "vector", "channels", "mask", "mu")


class Net(nn.Module):
    """Base of registered networks: it remembers its constructor keywords, so that
    :func:`sciffusion.io.save_pretrained` writes them to JSON and :func:`build_net` rebuilds it."""

    net_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args: Any, **kw: Any) -> None:
            outermost = "_net_kwargs" not in self.__dict__ and not self.__dict__.get("_in_init")
            if outermost:
                object.__setattr__(self, "_in_init", True)
            try:
                init(self, *args, **kw)
            finally:
                if outermost:
                    object.__setattr__(self, "_in_init", False)
            if outermost:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                kwargs_ = {k: v for k, v in bound.arguments.items() if k != "self"}
                object.__setattr__(self, "_net_kwargs", kwargs_)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def config(self) -> dict[str, Any]:
        """``{"name": registry name, "kwargs": constructor keywords}`` (JSON-ready)."""
        if not self.net_name or NETS.get(self.net_name) is not type(self):
            raise TypeError(
                f"{type(self).__name__} is not in the network registry; decorate it with"
                " @sciffusion.nets.register_net('name') so checkpoints can rebuild it"
            )
        return {"name": self.net_name, "kwargs": _jsonable(self.__dict__.get("_net_kwargs", {}))}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"network keyword value {value!r} ({type(value).__name__}) is not JSON-serialisable; pass"
        " plain numbers, strings, booleans or lists of them"
    )


NETS: dict[str, type[Net]] = {}
"""Registered networks by name (``build_net(name, **kwargs)``)."""

N = TypeVar("N", bound=type[Net])


def register_net(name: str) -> Callable[[N], N]:
    """Class decorator adding a :class:`Net` subclass to :data:`NETS` under ``name``."""

    def deco(cls: N) -> N:
        if not (isinstance(cls, type) and issubclass(cls, Net)):
            raise TypeError(f"register_net expects a subclass of sciffusion.nets.Net; got {cls}")
        if name in NETS and NETS[name] is not cls:
            raise ValueError(f"a network named {name!r} is already registered ({NETS[name]})")
        cls.net_name = name
        NETS[name] = cls
        return cls

    return deco


def build_net(name: str, **kwargs: Any) -> Net:
    """Build a registered network from its name and constructor keywords (as saved in JSON)."""
    if name not in NETS:
        raise ValueError(
            f"unknown network {name!r}; registered networks: {', '.join(sorted(NETS))}. Import the"
            " module that registers it (@register_net) before loading."
        )
    try:
        return NETS[name](**kwargs)
    except TypeError as err:
        sig = inspect.signature(NETS[name].__init__)
        allowed = [p for p in sig.parameters if p != "self"]
        raise ValueError(
            f"bad keywords for network {name!r}: {err}. Allowed keywords: {', '.join(allowed)}"
        ) from None


@dataclass(frozen=True)
class NetCond:
    """A condition split into what networks consume (see the module docstring)."""

    vector: Tensor | None = None
    channels: Tensor | None = None
    mask: Tensor | None = None


def split_cond(cond: Any) -> NetCond:
    """Route ``cond`` (None, tensor or mapping) into vector / channel condition and mask."""
    if cond is None:
        return NetCond()
    if isinstance(cond, Tensor):
        return _route(cond)
    if not isinstance(cond, Mapping):
        raise TypeError(
            f"a network condition must be None, a tensor or a mapping; got {type(cond).__name__}"
        )
    unknown = sorted(set(cond) - set(_COND_KEYS))
    if unknown:
        raise ValueError(
            f"unknown condition key(s) {unknown}; networks read {list(_COND_KEYS)} (see"
            " sciffusion.nets.base). Put extra inputs into 'vector' or 'channels'."
        )
    vector, channels, mask = cond.get("vector"), cond.get("channels"), cond.get("mask")
    inner = cond.get("cond")
    if inner is not None:
        sub = split_cond(inner)
        if (sub.vector is not None and vector is not None) or (
            sub.channels is not None and channels is not None
        ):
            raise ValueError("the condition gives the same input twice ('cond' and its own key)")
        vector = sub.vector if sub.vector is not None else vector
        channels = sub.channels if sub.channels is not None else channels
        mask = sub.mask if sub.mask is not None else mask
    if channels is None and cond.get("mu") is not None:
        channels = cond["mu"]
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(
            f"cond['mask'] must be a bool tensor (True = real element); got {mask.dtype}"
        )
    return NetCond(vector, channels, mask)


def _route(c: Tensor) -> NetCond:
    if c.ndim == 2:
        return NetCond(vector=c)
    if c.ndim >= 3:
        return NetCond(channels=c)
    raise ValueError(
        f"a tensor condition must be (B, C) (vector) or (B, Cc, ...) (channels); got shape"
        f" {tuple(c.shape)}. Reshape a per-sample scalar to (B, 1)."
    )


class VectorCond(nn.Module):
    """The vector condition of a network: zeros when absent; optional learned null embedding.

    With ``learned_null=True`` a sample whose condition is exactly zero (the null condition that
    conditioning dropout and classifier-free guidance feed) gets a learned vector instead, so the
    network can tell "no condition" from a small one. Returns ``(B, cond_dim)``.
    """

    def __init__(self, cond_dim: int, *, learned_null: bool = False) -> None:
        super().__init__()
        self.cond_dim = int(cond_dim)
        self.null = nn.Parameter(torch.zeros(self.cond_dim)) if learned_null else None

    def forward(self, vector: Tensor | None, batch: int, like: Tensor) -> Tensor | None:
        if self.cond_dim == 0:
            if vector is not None:
                raise ValueError(
                    f"this network takes no vector condition (cond_dim=0) but got one of shape"
                    f" {tuple(vector.shape)}; build it with cond_dim={vector.shape[-1]}"
                )
            return None
        if vector is None:
            vector = like.new_zeros(batch, self.cond_dim)
        if vector.shape != (batch, self.cond_dim):
            raise ValueError(
                f"vector condition has shape {tuple(vector.shape)}; this network expects"
                f" ({batch}, {self.cond_dim}) (cond_dim={self.cond_dim})"
            )
        vector = vector.to(like.dtype)
        if self.null is not None:
            is_null = (vector == 0).all(dim=1, keepdim=True)
            vector = torch.where(is_null, self.null.to(vector.dtype).expand_as(vector), vector)
        return vector


def channel_cond(
    channels: Tensor | None, x: Tensor, n: int, *, dim: int = 1, what: str = "channel"
) -> Tensor | None:
    """Validate the concatenated condition: ``n`` extra channels along ``dim``, zeros if absent."""
    if n == 0:
        if channels is not None:
            raise ValueError(
                f"this network takes no {what} condition (cond_channels=0) but got one of shape"
                f" {tuple(channels.shape)}; build it with cond_channels={channels.shape[dim]}"
            )
        return None
    shape = list(x.shape)
    shape[dim] = n
    if channels is None:
        return x.new_zeros(shape)
    if list(channels.shape) != shape:
        raise ValueError(
            f"{what} condition has shape {tuple(channels.shape)}; expected {tuple(shape)} (the"
            f" input's shape with {n} channels in dim {dim})"
        )
    return channels.to(x.dtype)


def check_noise(c_noise: Tensor, batch: int, name: str) -> Tensor:
    if c_noise.ndim == 0:
        c_noise = c_noise.expand(batch)
    if c_noise.shape != (batch,):
        raise ValueError(
            f"{name}: c_noise must be (B,) = ({batch},); got {tuple(c_noise.shape)}. Pass"
            " process.noise_cond(t)."
        )
    return c_noise
