"""Empirical model statistics (EMS) of DPM-Solver-v3 (Zheng et al. 2023): estimate, save, load.

In the VE frame ``u = y / alpha`` the PF-ODE is ``du/dlam = D - u``. DPM-Solver-v3 writes the model
through three per-``lam``, per-entry statistics (Sec. 3.2 of the paper; ``N = sigma eps - l y``)::

    f = N / alpha = (1 - l) u - D                       (l = 1: data prediction, f = -D)
    l_lam = argmin_l E || d N / d y ||_F^2 = 1 - E[diag(dD/du)]                      (Eq. 9)
    (s_lam, b_lam) = argmin E || f' - s f - b ||^2,   f' = df/dlam along the ODE     (Eq. 10)

so that ``g = e^{-int s} f - int e^{-int s} b`` is as close to constant in ``lam`` as the data
allow: the solver's Taylor expansion is then of the smoothest possible function. Along the ODE
``f' = -l' u + (1 - l)(D - u) - dD/dlam``, with ``dD/dlam`` the total derivative, one
Jacobian-vector product of ``D(alpha(lam) u, t(lam))`` with tangent ``(D - u, 1)``; ``diag(dD/du)``
comes from JVPs too (every entry for small events, Rademacher probes ``E[v * (J v)]`` otherwise).
``l'`` is a finite difference on the ``lam`` grid. The trajectories are solved from calibration
noise with a high-order solver on the statistics grid itself (uniform in ``lam``).

Statistics belong to one model (and one guidance scale); the degenerate statistics ``l = 1,
s = b = 0`` turn DPM-Solver-v3 into DPM-Solver++ (:func:`degenerate`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._files import atomic_path, atomic_write_text
from .._tensor import get_mu
from ..processes import GaussianProcess
from .grids import make_grid
from .registry import get_solver

__all__ = ["ModelStatistics", "degenerate", "estimate_statistics"]

STATS_FILE = "statistics.safetensors"
META_FILE = "statistics.json"


@dataclass
class ModelStatistics:
    """EMS on an increasing half log-SNR grid ``lam (K+1,)``; ``l, s, b`` are ``(K+1, *event)``
    float64 (a degenerate set stores broadcastable ``(K+1, 1, ...)``). ``meta`` holds primitives:
    the process, the calibration settings, the guidance scale if any."""

    lam: Tensor
    l: Tensor
    s: Tensor
    b: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lam = torch.as_tensor(self.lam, dtype=torch.float64)
        if lam.ndim != 1 or lam.numel() < 2 or bool((lam[1:] <= lam[:-1]).any()):
            raise ValueError(
                "statistics need an increasing 1-D lam grid of at least 2 points; got shape"
                f" {tuple(lam.shape)}"
            )
        self.lam = lam
        for name in ("l", "s", "b"):
            v = torch.as_tensor(getattr(self, name), dtype=torch.float64)
            if v.shape[:1] != lam.shape or not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"statistic {name!r} must be finite with a leading dimension {lam.numel()}"
                    f" (one row per lam); got shape {tuple(v.shape)}"
                )
            setattr(self, name, v)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.l.shape[1:])

    def save(self, path: str | Path, *, force: bool = True) -> Path:
        """Write ``statistics.safetensors`` and ``statistics.json`` into the folder ``path``
        (each atomically; the JSON last, so a folder with a JSON file is complete)."""
        from safetensors.torch import save_file

        out = Path(path)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"{out} is a file; statistics are saved into a folder")
        if (out / META_FILE).exists() and not force:
            raise FileExistsError(f"{out / META_FILE} exists; pass force=True to overwrite it")
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).contiguous() for k in ("lam", "l", "s", "b")}
        with atomic_path(out / STATS_FILE) as tmp:
            save_file(tensors, str(tmp))
        meta = {"format": "sciffusion-ems-1", **self.meta}
        atomic_write_text(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return out

    @staticmethod
    def load(path: str | Path) -> ModelStatistics:
        """Read a folder written by :meth:`save`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / META_FILE).is_file() or not (folder / STATS_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} holds no model statistics ({META_FILE} + {STATS_FILE}); compute them"
                " with sciffusion.solvers.estimate_statistics(...).save(folder)"
            )
        meta = json.loads((folder / META_FILE).read_text())
        if meta.pop("format", None) != "sciffusion-ems-1":
            raise ValueError(f"{folder / META_FILE} is not a sciffusion statistics file")
        try:
            t = load_file(str(folder / STATS_FILE))
        except SafetensorError as err:
            raise ValueError(f"{folder / STATS_FILE} is corrupt or truncated ({err})") from err
        missing = {"lam", "l", "s", "b"} - set(t)
        if missing:
            raise ValueError(f"{folder / STATS_FILE} lacks the tensors {sorted(missing)}")
        return ModelStatistics(t["lam"], t["l"], t["s"], t["b"], meta)

    def at(self, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(l, s, b)`` at the half log-SNRs ``lam (M,)``: piecewise linear in ``lam``, constant
        beyond the grid's ends."""
        lam = lam.to(torch.float64).clamp(float(self.lam[0]), float(self.lam[-1]))
        j = torch.searchsorted(self.lam, lam, right=True).clamp(1, self.lam.numel() - 1)
        lo, hi = self.lam[j - 1], self.lam[j]
        w = ((lam - lo) / (hi - lo)).reshape(-1, *([1] * (self.l.ndim - 1)))
        return tuple(v[j - 1] + (v[j] - v[j - 1]) * w for v in (self.l, self.s, self.b))  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def degenerate(event_ndim: int = 1, lam_range: tuple[float, float] = (-20.0, 20.0)):
    """``l = 1, s = b = 0``: DPM-Solver-v3 with these statistics is DPM-Solver++ (exactly).

    Cached: one shared object per event rank, so its coefficient cache is reused; do not mutate.
    """
    shape = (2, *([1] * event_ndim))
    return ModelStatistics(
        torch.tensor(lam_range, dtype=torch.float64),
        torch.ones(shape, dtype=torch.float64),
        torch.zeros(shape, dtype=torch.float64),
        torch.zeros(shape, dtype=torch.float64),
        {"kind": "degenerate"},
    )


def estimate_statistics(
    denoiser,
    x: Tensor,
    *,
    n_grid: int = 120,
    t_start: float | None = None,
    t_end: float | None = None,
    solver: str = "unipc_bh2_3",
    probes: int | str = "auto",
    derivative: str = "jvp",
    cond: Any = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> ModelStatistics:
    """Estimate ``l, s, b`` from calibration noise ``x (n, *event)`` at ``t_start``.

    Parameters
    ----------
    x
        Calibration start samples (the paper: 1024); the statistics are averages over them.
    n_grid
        ``K``: steps of the ``lam``-uniform statistics grid (``K + 1`` points; the paper: 250-1200).
    t_start, t_end
        Ends of the grid (default: the process's ``t_max`` and ``t_min``); cover the range of the
        grids you will sample on (values beyond the ends are held constant).
    solver
        Registered ODE solver for the calibration trajectories, run on the statistics grid.
    probes
        ``"exact"``: one JVP per event entry for ``diag(dD/du)``; an int ``m``: ``m`` Rademacher
        probes per sample (unbiased, ``E[v * (J v)] = diag J``); ``"auto"``: exact up to 4
        entries, else 2 probes.
    derivative
        ``"jvp"`` (forward-mode, as in the paper) or ``"fd"`` (central differences in ``lam``,
        for denoisers that forward-mode AD cannot trace).
    guidance
        Recorded in ``meta`` (statistics depend on the guidance scale).
    """
    process = getattr(denoiser, "process", None)
    if not isinstance(process, GaussianProcess):
        raise TypeError("estimate_statistics needs a denoiser with a Gaussian `process`")
    if derivative not in ("jvp", "fd"):
        raise ValueError(f"derivative must be 'jvp' or 'fd'; got {derivative!r}")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 calibration samples (n, *event); got {tuple(x.shape)}")
    if n_grid < 2:
        raise ValueError(f"n_grid must be >= 2; got {n_grid}")
    numel = x[0].numel()
    if probes == "auto":
        probes = "exact" if numel <= 4 else 2
    if probes != "exact" and not (isinstance(probes, int) and probes >= 1):
        raise ValueError(f"probes must be 'exact', 'auto' or a positive int; got {probes!r}")
    grid = make_grid(process, n_grid, "log_snr", t_start=t_start, t_end=t_end, final="t_min")
    lam = 0.5 * process.log_snr(grid).to(torch.float64)
    if not bool(torch.isfinite(lam).all()):
        raise ValueError(
            "the statistics grid must have finite log-SNR at both ends; pass t_start < 1 where"
            f" alpha > 0 and t_end > 0 (got the range {float(grid[0])}..{float(grid[-1])})"
        )
    # calibration trajectories at every grid point
    states = [x]
    with torch.no_grad():
        get_solver(solver)(
            denoiser, x, grid, cond=cond, callback=lambda info: states.append(info["x"]),
            progress=progress,
        )  # fmt: skip
    mu = process.check_mu(get_mu(cond), x)
    dtype = x.dtype

    def model_u(u: Tensor, lam_k: Tensor) -> Tensor:
        """``D_y(alpha(lam) u, t(lam))`` in the mean-shifted frame (differentiable in both)."""
        t = process.t_of_log_snr(2 * lam_k).to(dtype)
        a = process.alpha(t).to(dtype)
        y = a * u
        out = denoiser(y if mu is None else y + mu, t.expand(u.shape[0]), cond)
        return out if mu is None else out - mu

    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    ls, us, ds = [], [], []
    with torch.no_grad():
        for k in range(n_grid + 1):
            yk = states[k] if mu is None else states[k] - mu
            a = float(process.alpha(grid[k]))
            u = yk / a
            lam_k = lam[k].to(dtype)
            d = model_u(u, lam_k)
            diag = _jacobian_diagonal(
                model_u, u, lam_k, probes, gen, derivative, batchable=mu is None and cond is None
            )
            ls.append(1.0 - diag.mean(0).to(torch.float64))
            us.append(u)
            ds.append(d)
    l_all = torch.stack(ls)  # (K+1, *event)
    dl = _gradient(l_all, lam)
    s_all, b_all = [], []
    with torch.no_grad():
        for k in range(n_grid + 1):
            u, d, lam_k = us[k], ds[k], lam[k].to(dtype)
            d_total = _total_derivative(model_u, u, d, lam_k, derivative)
            lk = l_all[k].to(dtype)
            f = (1 - lk) * u - d
            df = -dl[k].to(dtype) * u + (1 - lk) * (d - u) - d_total
            s_k, b_k = _regress(df.to(torch.float64), f.to(torch.float64))
            s_all.append(s_k)
            b_all.append(b_k)
    meta = {
        "kind": "estimated",
        "process": process.name,
        "process_config": _primitives(process),
        "n_samples": int(x.shape[0]),
        "n_grid": int(n_grid),
        "t_start": float(grid[0]),
        "t_end": float(grid[-1]),
        "solver": solver,
        "probes": probes,
        "derivative": derivative,
        "guidance": guidance,
    }
    return ModelStatistics(lam, l_all, torch.stack(s_all), torch.stack(b_all), meta)


def _primitives(process) -> dict[str, Any]:
    import dataclasses

    if dataclasses.is_dataclass(process):
        return {
            f.name: getattr(process, f.name)
            for f in dataclasses.fields(process)
            if isinstance(getattr(process, f.name), int | float | str | bool)
        }
    return {}


def _jvp(fn, primals: tuple[Tensor, Tensor], tangents: tuple[Tensor, Tensor]) -> Tensor:
    """Forward-mode ``J v`` with dual numbers (``torch.autograd.forward_ad``)."""
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        duals = [fwad.make_dual(p, t) for p, t in zip(primals, tangents, strict=True)]
        tangent = fwad.unpack_dual(fn(*duals)).tangent
    if tangent is None:  # the output does not depend on the inputs
        return torch.zeros_like(primals[0])
    return tangent


def _jacobian_diagonal(model_u, u, lam_k, probes, gen, derivative, batchable: bool) -> Tensor:
    """Per-sample ``diag(dD/du)`` (exact) or its Rademacher estimate ``mean_p v * (J v)``."""

    def jv(v: Tensor) -> Tensor:
        return _jv_batched(model_u, u, lam_k, v, derivative)

    if probes == "exact":  # basis vectors in chunks, the batch repeated once per entry
        n, m = u.shape[0], u[0].numel()
        out = torch.empty(n, m, dtype=u.dtype, device=u.device)
        chunk = max(1, 65536 // max(n, 1)) if batchable else 1
        for j0 in range(0, m, chunk):
            js = range(j0, min(m, j0 + chunk))
            basis = torch.zeros(len(js), n, m, dtype=u.dtype, device=u.device)
            for c, j in enumerate(js):
                basis[c, :, j] = 1.0
            big_u = u.reshape(1, n, -1).expand(len(js), n, m).reshape(-1, *u.shape[1:])
            jvs = _jv_batched(model_u, big_u, lam_k, basis.reshape(big_u.shape), derivative)
            jvs = jvs.reshape(len(js), n, m)
            for c, j in enumerate(js):
                out[:, j] = jvs[c, :, j]
        return out.reshape(u.shape)
    acc = torch.zeros_like(u)
    for _ in range(probes):
        v = torch.randint(0, 2, u.shape, generator=gen).to(u.dtype) * 2 - 1
        acc = acc + v * jv(v)
    return acc / probes


def _jv_batched(model_u, u: Tensor, lam_k: Tensor, v: Tensor, derivative: str) -> Tensor:
    """``(dD/du) v`` at fixed ``lam`` (forward mode, or central differences)."""
    if derivative == "fd":
        eps = 1e-4 if u.dtype == torch.float64 else 1e-2
        return (model_u(u + eps * v, lam_k) - model_u(u - eps * v, lam_k)) / (2 * eps)
    return _jvp(model_u, (u, lam_k), (v, torch.zeros_like(lam_k)))


def _total_derivative(model_u, u, d, lam_k, derivative) -> Tensor:
    """``dD/dlam`` along the PF-ODE ``du/dlam = D - u``."""
    du = d - u
    if derivative == "fd":
        h = 1e-4 if u.dtype == torch.float64 else 1e-2
        return (model_u(u + h * du, lam_k + h) - model_u(u - h * du, lam_k - h)) / (2 * h)
    return _jvp(model_u, (u, lam_k), (du, torch.ones_like(lam_k)))


def _gradient(v: Tensor, lam: Tensor) -> Tensor:
    """``dv/dlam`` on a (uniform or not) grid: second-order central differences, one-sided ends."""
    out = torch.empty_like(v)
    h = lam[1:] - lam[:-1]
    shape = (-1, *([1] * (v.ndim - 1)))
    h0, h1 = h[:-1].reshape(shape), h[1:].reshape(shape)
    out[1:-1] = (h0**2 * v[2:] - h1**2 * v[:-2] + (h1**2 - h0**2) * v[1:-1]) / (h0 * h1 * (h0 + h1))
    out[0] = (v[1] - v[0]) / h[0]
    out[-1] = (v[-1] - v[-2]) / h[-1]
    return out


def _regress(df: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    """Per entry least squares ``df ~ s f + b`` over the samples (dim 0)."""
    fm, dm = f.mean(0), df.mean(0)
    var = (f - fm).pow(2).mean(0)
    cov = ((f - fm) * (df - dm)).mean(0)
    tiny = 1e-12 * (fm.abs() + var.sqrt() + 1.0) ** 2
    s = torch.where(var > tiny, cov / var.clamp(min=math.ulp(1.0)), torch.zeros_like(var))
    return s, dm - s * fm
