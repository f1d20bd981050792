"""Safe outputs: atomic writes and output folders that are never overwritten without ``force``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "prepare_out_dir"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    With ``force=False`` an existing ``path`` is an error (checked before any work is done). On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force (force=True) to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, force: bool = True) -> Path:
    with atomic_path(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, force: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode(), force=force)


def prepare_out_dir(out: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Path:
    """Create the output folder; refuse a non-empty one unless ``force`` (or ``resume``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder; choose another path")
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise FileExistsError(
            f"output folder {out} is not empty; pass --force to overwrite its files, --resume to"
            " continue a run, or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
