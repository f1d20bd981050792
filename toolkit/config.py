"""Run configs: dataclasses of primitives, read from TOML, overridden by flags, saved with outputs.

Precedence: dataclass defaults < ``--config file.toml`` < explicit command-line flags. Unknown keys
and wrong types are errors that name the key and the allowed ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from ._files import atomic_write_text

__all__ = ["dump_toml", "load_config", "save_config"]

T = TypeVar("T")


def _coerce(name: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config key {name!r} must be true/false; got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (list, tuple) and isinstance(value, (list, tuple)):
        return kind(value)
    if not isinstance(value, kind):
        raise ValueError(f"config key {name!r} must be {kind.__name__}; got {value!r}")
    return value


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    *,
    section: str | None = None,
    **overrides: Any,
) -> T:
    """Build ``cls`` from defaults, an optional TOML file (optionally one ``[section]``) and
    overrides (``None`` means "not given")."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {p} is not valid TOML: {err}") from None
        if section is not None:  # shared top-level keys plus this command's [section] table
            table = data.get(section, {})
            data = {k: v for k, v in data.items() if not isinstance(v, dict)}
            data.update(table if isinstance(table, dict) else {})
        for k, v in data.items():
            if k not in fields:
                raise ValueError(
                    f"unknown key {k!r} in {p}; allowed keys: {', '.join(sorted(fields))}"
                )
            values[k] = v
    for k, v in overrides.items():
        if k not in fields:
            raise ValueError(f"unknown option {k!r}; allowed: {', '.join(sorted(fields))}")
        if v is not None:
            values[k] = v
    defaults = cls()  # type: ignore[call-arg]
    for k, v in list(values.items()):
        values[k] = _coerce(k, v, getattr(defaults, k))
    return dataclasses.replace(defaults, **values)  # type: ignore[type-var]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null; leave the key out")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(cfg: Any) -> str:
    """A flat dataclass (or dict) of primitives as TOML text; ``None`` values are left out."""
    data = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if v is not None]
    return "\n".join(lines) + "\n"


def save_config(cfg: Any, out_dir: str | os.PathLike, name: str = "config.toml") -> Path:
    """Write the merged config next to the outputs (atomically)."""
    return atomic_write_text(Path(out_dir) / name, dump_toml(cfg))
