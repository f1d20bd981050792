"""PNG figures of the MRI pack: reconstructions with error and std maps, acquired masks over time.

Matplotlib runs headless (``Agg``) and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["save_acquisition_figure", "save_recon_figure"]


def _np(v: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.detach().cpu()
        v = v.abs() if v.is_complex() else v
        return v.numpy()
    return np.abs(v) if np.iscomplexobj(v) else np.asarray(v)


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt
    from sciffusion._files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def save_recon_figure(
    path: str | Path,
    recon: Tensor,
    *,
    target: Tensor | None = None,
    zero_filled: Tensor | None = None,
    std: Tensor | None = None,
    mask: Tensor | None = None,
    title: str = "",
) -> Path:
    """One row per slice: [zero-filled], reconstruction, [target, |error|], [std], [mask].

    Images ``(S, H, W)`` (complex or magnitude; magnitudes are shown), ``mask`` ``(W,)`` or
    ``(S, W)``. Intensities share the target's (else the reconstruction's) range per slice;
    error and std maps share one range per slice so they can be compared.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = _np(recon)
    rec = rec[None] if rec.ndim == 2 else rec
    panels: list[tuple[str, np.ndarray, str]] = []
    if zero_filled is not None:
        panels.append(("zero-filled", _np(zero_filled).reshape(rec.shape), "img"))
    panels.append(("reconstruction", rec, "img"))
    if target is not None:
        tgt = _np(target).reshape(rec.shape)
        panels.append(("target", tgt, "img"))
        panels.append(("|error|", np.abs(rec - tgt), "err"))
    if std is not None:
        panels.append(("posterior std", _np(std).reshape(rec.shape), "err"))
    n, cols = rec.shape[0], len(panels) + (mask is not None)
    fig, axes = plt.subplots(n, cols, figsize=(2.4 * cols, 2.4 * n + 0.4), squeeze=False)
    for s in range(n):
        ref = panels[[p[0] for p in panels].index("target")][1][s] if target is not None else rec[s]
        vmax = float(ref.max()) or 1.0
        emax = max((float(p[1][s].max()) for p in panels if p[2] == "err"), default=1.0) or 1.0
        for j, (name, img, kind) in enumerate(panels):
            ax = axes[s, j]
            if kind == "img":
                ax.imshow(img[s], cmap="gray", vmin=0, vmax=vmax)
            else:
                ax.imshow(img[s], cmap="inferno", vmin=0, vmax=emax)
            if s == 0:
                ax.set_title(name, fontsize=9)
            ax.axis("off")
        if mask is not None:
            m = _np(torch.as_tensor(mask).to(torch.float32))
            m = m[s] if m.ndim == 2 else m
            ax = axes[s, -1]
            ax.imshow(np.broadcast_to(m, (rec.shape[1], m.shape[0])), cmap="gray", vmin=0, vmax=1)
            if s == 0:
                ax.set_title(f"mask ({int(m.sum())}/{m.shape[0]})", fontsize=9)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_acquisition_figure(
    path: str | Path,
    order: Tensor,
    width: int,
    *,
    steps: Sequence[int] = (),
    n_steps: int | None = None,
    n_initial: int = 0,
    title: str = "",
) -> Path:
    """The acquired mask over time: row ``k`` shows the columns held after ``k`` acquisitions.

    ``order`` is ``(B, n)`` (or ``(n,)``) columns in acquisition order, the first ``n_initial``
    the calibration block; ``steps`` the reverse-process step of each later acquisition (labels).
    One panel per slice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = torch.as_tensor(order).reshape(-1, torch.as_tensor(order).shape[-1]).cpu()
    B, n = o.shape
    fig, axes = plt.subplots(1, B, figsize=(3.2 * B, 0.25 * (n - n_initial) + 1.6), squeeze=False)
    for b in range(B):
        rows = []
        held = np.zeros(width)
        held[o[b, :n_initial].numpy()] = 1
        rows.append(held.copy())
        for k in range(n_initial, n):
            held[int(o[b, k])] = 1
            rows.append(held.copy())
        ax = axes[0, b]
        ax.imshow(np.array(rows), cmap="Greens", vmin=0, vmax=1.2, aspect="auto")
        labels = ["start"] + [
            f"step {steps[k]}" if k < len(steps) else f"#{k + 1}" for k in range(n - n_initial)
        ]
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("k-space column")
        ax.set_title(f"slice {b}", fontsize=9)
    sup = title or "acquired columns over the reverse process"
    if n_steps:
        sup += f" ({n_steps} steps)"
    fig.suptitle(sup, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
