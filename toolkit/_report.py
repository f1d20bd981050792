"""Benchmark reports: one shared ``docs/benchmarks.md`` with a marked section per benchmark.

Every benchmark (``benchmarks/*.py`` and the ``sciffusion <pack> benchmark`` verbs) prints its
table and replaces only its own section, delimited by ``<!-- name:start -->`` and
``<!-- name:end -->``, so benchmarks can be re-run independently without clobbering each other.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

from ._files import atomic_write_text

__all__ = ["DEFAULT_DOC", "machine_note", "write_section"]

#: the report file, relative to the working directory (the repository root for ``make bench``)
DEFAULT_DOC = Path("docs/benchmarks.md")
_TITLE = (
    "# Benchmarks\n\n"
    "Written by the scripts in `benchmarks/` (`make bench` runs them all; each section names\n"
    "the command that produced it). Quality and time are measured in the same run, on the same\n"
    "data and machine, beside the baseline the field would use; ratios compare the two.\n"
)


def machine_note() -> str:
    """One line describing where the numbers were measured (CPU count, threads, versions, date)."""
    import torch

    dev = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads), {dev}; {_dt.date.today().isoformat()}."
    )


def write_section(name: str, text: str, path: str | os.PathLike | None = None) -> Path:
    """Replace the ``name`` section of the report at ``path`` (default :data:`DEFAULT_DOC`) with
    ``text``, appending the section when it is absent; the file is written atomically."""
    path = Path(DEFAULT_DOC if path is None else path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.is_file() else _TITLE
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old and end in old:
        i, j = old.index(start), old.index(end) + len(end)
        new = old[:i] + block + old[j:]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    return atomic_write_text(path, new)
