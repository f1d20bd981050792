"""Checkpoints to ship: ``save_pretrained`` / ``from_pretrained`` (docs/design.md, contract 6).

A checkpoint is a folder with two files:

- ``config.json``: format version, the network's registry name and keywords, the process config,
  the prediction type and ``sigma_data``;
- ``model.safetensors``: the network weights (the EMA weights of a training module).

No pickle anywhere: safetensors holds only tensors, JSON only primitives. Lightning ``.ckpt`` files
are for resuming a run, not for shipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._files import atomic_path, atomic_write_text
from ._version import __version__

__all__ = ["CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "from_pretrained", "save_pretrained"]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_KINDS = ("gaussian", "masked")


def _as_denoiser(obj: Any, ema: bool):
    from .denoiser import Denoiser, MaskedDenoiser

    if isinstance(obj, (Denoiser, MaskedDenoiser)):
        return obj
    make = getattr(obj, "denoiser", None)  # a DiffusionModule (duck-typed: no Lightning import)
    if callable(make):
        return make(ema=ema)
    raise TypeError(
        f"save_pretrained takes a sciffusion.Denoiser, MaskedDenoiser or DiffusionModule; got"
        f" {type(obj).__name__}"
    )


def save_pretrained(
    obj: Any, path: str | os.PathLike, *, force: bool = False, ema: bool = True
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into the folder ``path``.

    Parameters
    ----------
    obj
        A :class:`sciffusion.Denoiser` / :class:`sciffusion.MaskedDenoiser` wrapping a registered
        network (:mod:`sciffusion.nets`), or a ``DiffusionModule`` (its EMA weights unless
        ``ema=False``).
    force
        Overwrite an existing checkpoint in ``path``; without it that is an error.

    Each file is written atomically; the weights go first and the config last, so a folder with a
    config always has its weights.
    """
    from safetensors.torch import save_file

    from .denoiser import MaskedDenoiser

    den = _as_denoiser(obj, ema)
    net = den.net
    get_config = getattr(net, "config", None)
    if not callable(get_config):
        raise TypeError(
            f"the network {type(net).__name__} has no config(); subclass sciffusion.nets.Net and"
            " register it with @register_net('name') so from_pretrained can rebuild it"
        )
    net_cfg = get_config()
    masked = isinstance(den, MaskedDenoiser)
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "sciffusion_version": __version__,
        "kind": "masked" if masked else "gaussian",
        "net": net_cfg,
        "process": den.process.config(),
        "prediction": None if masked else den.prediction,
        "sigma_data": None if masked else den.sigma_data,
    }
    text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n"
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; save_pretrained writes a folder")
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (out / n).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out} already holds a checkpoint ({', '.join(existing)}); pass force=True (--force)"
            " to overwrite it, or choose another folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "sciffusion_format": "1"})
    atomic_write_text(out / CONFIG_NAME, text)
    return out


def _require(config: dict[str, Any], key: str, where: Path, fix: str) -> Any:
    if key not in config:
        raise ValueError(f"{where} has no {key!r} key; {fix}")
    return config[key]


def _read_config(folder: Path) -> dict[str, Any]:
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {folder}; a sciffusion checkpoint folder holds {CONFIG_NAME} and"
            f" {WEIGHTS_NAME} (written by save_pretrained)"
        )
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{cfg_path} is not valid JSON ({err}); re-save the checkpoint") from None
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path} must hold a JSON object; got {type(config).__name__}")
    return config


def _load_tensors(path: Path, device: str | torch.device) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(
            f"no {WEIGHTS_NAME} beside the config in {path.parent}; the checkpoint is incomplete"
            " (re-run save_pretrained)"
        )
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{path} is not a readable safetensors file ({err}); it is corrupt or truncated."
            " Re-save it with save_pretrained or copy it again."
        ) from None


def from_pretrained(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
):
    """Rebuild the denoiser saved by :func:`save_pretrained` (in eval mode).

    Returns a :class:`sciffusion.Denoiser` (or :class:`sciffusion.MaskedDenoiser` for tokens) on
    ``device``, optionally cast to ``dtype``. Raises with the reason and the fix for a missing or
    corrupt file, a missing config key, an unknown network or process, or weights that do not fit
    the network the config describes.
    """
    from .denoiser import Denoiser, MaskedDenoiser
    from .nets import build_net
    from .processes import process_from_config

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    config = _read_config(folder)
    where = folder / CONFIG_NAME
    version = _require(config, "format_version", where, "it was not written by save_pretrained")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{where} has format_version {version!r}; this sciffusion ({__version__}) reads up to"
            f" {FORMAT_VERSION}. Upgrade sciffusion."
        )
    kind = config.get("kind", "gaussian")
    if kind not in _KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; expected one of {_KINDS}")
    net_cfg = _require(
        config, "net", where, 'add {"net": {"name": ..., "kwargs": {...}}} (see sciffusion.nets)'
    )
    if not isinstance(net_cfg, dict) or "name" not in net_cfg:
        raise ValueError(
            f"{where}: 'net' must be an object with a 'name' key (and 'kwargs'); got {net_cfg!r}"
        )
    proc_cfg = _require(
        config, "process", where, 'add {"process": {"name": "vp-linear", ...}} (Process.config())'
    )
    if not isinstance(proc_cfg, dict):
        raise ValueError(f"{where}: 'process' must be an object; got {proc_cfg!r}")
    net = build_net(net_cfg["name"], **net_cfg.get("kwargs", {}))
    process = process_from_config(proc_cfg)
    _load_into(net, _load_tensors(folder / WEIGHTS_NAME, "cpu"), folder / WEIGHTS_NAME)
    if kind == "masked":
        den = MaskedDenoiser(net, process)  # type: ignore[arg-type]
    else:
        prediction = _require(
            config, "prediction", where, 'add "prediction": "eps" (or x0, v, score, velocity, edm)'
        )
        sigma_data = _require(config, "sigma_data", where, 'add "sigma_data": 1.0')
        den = Denoiser(net, process, prediction, sigma_data=float(sigma_data))
    den = den.to(device=device)
    if dtype is not None:
        den = den.to(dtype=dtype)
    return den.eval()


def _load_into(net: torch.nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} vs net {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(tensors))
        if tensors[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:5]}{' ...' if len(wrong) > 5 else ''}")
        raise ValueError(
            f"the weights in {path} do not fit the network described by its config.json ("
            + "; ".join(parts)
            + "). The config and weights come from different models; re-save them together."
        )
    net.load_state_dict(tensors, strict=True)
