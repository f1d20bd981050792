"""Reconstruction: k-space + mask (+ coil maps) -> posterior mean and per-pixel std.

One entry point, :func:`reconstruct`, for the classical baselines and every diffusion method; the
diffusion methods are the core's inverse-problem pieces (:mod:`sciffusion.inverse`) applied to an
MRI prior on network channels (:class:`~.channels.ChannelMRI`), run by any registered solver:

==============  =========  =====================================================================
method          prior      what runs
==============  =========  =====================================================================
``zero_filled`` none       ``A^H y``
``tv``          none       TV-ADMM (:func:`~.baselines.tv_admm`), converged
``hard``        uncond     hard DC (k-space replacement, DDNM) in every reverse step
``prox``        uncond     proximal DC (DiffPIR) in every reverse step
``dps``         uncond     DPS guidance (Chung et al. 2023)
``pigdm``       uncond     PiGDM guidance (Song et al. 2023)
``red_diff``    uncond     RED-Diff (Mardani et al. 2024): a point estimate per run
``smc``         uncond     twisted SMC (TDS, Wu et al. 2023): weighted particles
``cond``        cond       conditional prior + DC in every reverse step (Alsubaie et al. 2025)
``irsde``       irsde      IR-SDE restoration sampled by the MR Sampler (MaRS, ODE-2 in data
                           prediction, :func:`sciffusion.inverse.mean_reverting.mr_sampler`),
                           ``solver="ir_sde_em"`` for IR-SDE's own Euler-Maruyama sampler, or
                           any registered solver; optionally with DC
==============  =========  =====================================================================

Every method sees the data through :func:`~.scaling.intensity_scale`: ``y / s`` in, ``s x`` out,
noise ``sigma / s`` (the one normalisation, also used in training). Slices are reconstructed one
at a time, their ``n_samples`` posterior samples in one batch.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .baselines import tv_admm
from .channels import ChannelMRI, channels_to_image
from .masks import check_mask
from .physics import SenseMRI, SinglecoilMRI
from .prior import MRIPrior, load_prior, prior_kind
from .scaling import intensity_scale

__all__ = ["METHODS", "MethodSpec", "Reconstruction", "build_operator", "reconstruct"]


class MethodSpec(NamedTuple):
    """A reconstruction method: the prior kind it needs, its default solver and steps."""

    name: str
    prior: str | None
    solver: str | None
    nfe: int
    summary: str


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec("zero_filled", None, None, 0, "zero-filled A^H y"),
        MethodSpec("tv", None, None, 0, "total variation, ADMM (lam in normalised units)"),
        MethodSpec("hard", "uncond", "ddpm", 50, "unconditional prior + hard DC each step"),
        MethodSpec("prox", "uncond", "ddpm", 50, "unconditional prior + proximal DC (DiffPIR)"),
        MethodSpec("dps", "uncond", "ddpm", 50, "unconditional prior + DPS guidance"),
        MethodSpec("pigdm", "uncond", "ddim", 50, "unconditional prior + PiGDM guidance"),
        MethodSpec("red_diff", "uncond", None, 50, "RED-Diff point estimates (Adam)"),
        MethodSpec("smc", "uncond", None, 50, "twisted SMC (TDS) particles"),
        MethodSpec("cond", "cond", "ddpm", 20, "conditional prior + DC each step"),
        MethodSpec("irsde", "irsde", "mr_sampler", 10, "IR-SDE + MR Sampler (ODE-2, data)"),
    )
}


#: the mean-reverting samplers of :mod:`sciffusion.inverse.mean_reverting` (irsde only)
MR_SAMPLERS = ("mr_sampler", "ir_sde_em")


class Reconstruction(NamedTuple):
    """Result of :func:`reconstruct` (raw units of the input k-space)."""

    mean: Tensor  # (B, H, W) complex: posterior mean (or the point estimate)
    std: Tensor  # (B, H, W) real: per-pixel std of |x| over the samples (0 for one sample)
    samples: Tensor  # (B, S, H, W) complex
    scale: Tensor  # (B,) the intensity scale s of each slice
    nfe: int  # network evaluations per slice (one batched call counts once)
    seconds: float  # wall time per slice


class _Counting:
    """A denoiser that counts its calls (batched calls count once)."""

    def __init__(self, denoiser) -> None:
        self.denoiser = denoiser
        self.process = denoiser.process
        self.calls = 0

    def __call__(self, x: Tensor, t, cond: Any = None) -> Tensor:
        self.calls += 1
        return self.denoiser(x, t, cond)


def build_operator(mask: Tensor, img_size: tuple[int, int], maps: Tensor | None = None):
    """The complex Cartesian operator: :class:`SinglecoilMRI` or :class:`SenseMRI` (maps given)."""
    if maps is None:
        return SinglecoilMRI(mask, img_size)
    if tuple(maps.shape[-2:]) != tuple(img_size):
        raise ValueError(
            f"coil maps are {tuple(maps.shape[-2:])} but the images are {tuple(img_size)};"
            " estimate the maps from this k-space (estimate_maps_lowres)"
        )
    return SenseMRI(mask, maps)


def _resolve_prior(method: str, prior, device) -> MRIPrior | None:
    spec = METHODS[method]
    if spec.prior is None:
        return None
    if prior is None:
        prior = load_prior(spec.prior, device=device or "cpu")
    elif isinstance(prior, str):
        prior = load_prior(prior, device=device or "cpu")
    elif not isinstance(prior, MRIPrior):
        if not hasattr(prior, "process"):
            raise TypeError(
                f"prior must be an MRIPrior, a shipped name or a denoiser; got {type(prior)}"
            )
        prior = MRIPrior(prior, prior_kind(prior), None, {})
    if prior.kind != spec.prior:
        raise ValueError(
            f"method {method!r} needs a {spec.prior!r} prior but got a {prior.kind!r} one; load"
            f" it with load_prior({spec.prior!r}) or choose a method for this prior"
        )
    return prior


def _device_of(den) -> torch.device:
    for p in getattr(den, "parameters", lambda: iter(()))():
        return p.device
    return torch.device("cpu")


def reconstruct(
    kspace: Tensor,
    mask: Tensor,
    *,
    method: str = "cond",
    prior: MRIPrior | str | Any | None = None,
    maps: Tensor | None = None,
    sigma: float = 0.0,
    solver: str | None = None,
    nfe: int | None = None,
    n_samples: int = 4,
    generator: torch.Generator | None = None,
    options: dict[str, Any] | None = None,
    callback: Callable[[dict], Any] | None = None,
    progress: bool = False,
) -> Reconstruction:
    """Reconstruct undersampled Cartesian MRI with ``method`` (see :data:`METHODS`).

    Parameters
    ----------
    kspace : Tensor
        Complex ``(B, H, W)`` (single coil) or ``(B, C, H, W)`` (multi coil, needs ``maps``);
        entries outside the mask are ignored (fully sampled data may be passed).
    mask : Tensor
        Column mask ``(W,)`` or ``(B, W)`` with the k-space centre sampled.
    method : str
        A key of :data:`METHODS`.
    prior : MRIPrior, str or denoiser, optional
        The prior (default: the shipped one of the kind the method needs).
    maps : Tensor, optional
        Coil sensitivities ``(C, H, W)`` or ``(B, C, H, W)``, RSS-normalised.
    sigma : float
        k-space noise std per real/imaginary part, in the units of ``kspace`` (0: noiseless).
    solver, nfe : optional
        Registered solver name (:data:`sciffusion.solvers.SOLVERS`; for ``irsde`` also
        ``"mr_sampler"`` (default) and ``"ir_sde_em"``) and number of steps (defaults per
        method; ``red_diff`` and ``smc`` use the grid but no solver).
    n_samples : int
        Posterior samples per slice (``smc``: all ``n_particles`` resampled particles).
    generator : torch.Generator, optional
        Every random draw.
    options : dict, optional
        Method knobs: ``lam`` (prox, tv, red_diff), ``zeta`` (dps), ``weight`` (pigdm), ``dc``
        (cond, irsde: ``hard``/``prox``/None), ``n_particles``, ``c_twist`` (smc), ``lr``
        (red_diff), ``eta`` (ddim), ``spacing`` (grid).

    Returns
    -------
    Reconstruction
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    if not isinstance(kspace, Tensor) or not kspace.is_complex() or kspace.ndim not in (3, 4):
        raise ValueError(
            "kspace must be complex (B, H, W) single-coil or (B, C, H, W) multi-coil; got"
            f" {tuple(getattr(kspace, 'shape', ()))} of dtype {getattr(kspace, 'dtype', None)}"
        )
    if kspace.ndim == 4 and maps is None:
        raise ValueError(
            f"multi-coil k-space ({kspace.shape[1]} coils) needs coil maps: pass maps= (simulated,"
            " or estimate_maps_lowres(kspace, mask=mask))"
        )
    if kspace.ndim == 3 and maps is not None:
        raise ValueError("maps were given for single-coil k-space (B, H, W); drop maps=")
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    if not (sigma >= 0 and sigma < float("inf")):
        raise ValueError(f"sigma must be finite and >= 0; got {sigma}")
    opts = dict(options or {})
    if maps is not None and sigma > 0 and (method == "hard" or opts.get("dc") == "hard"):
        raise ValueError(
            "hard data consistency needs noiseless data on multi-coil k-space: with several coils"
            " the column-undersampled SENSE system is (over)determined, so the projection returns"
            " the least-squares SENSE solution, discarding the prior and amplifying the noise"
            f" (sigma={sigma}); use method='prox' (or options={{'dc': 'prox'}})"
        )
    spec = METHODS[method]
    B, (H, W) = kspace.shape[0], kspace.shape[-2:]
    m = check_mask(mask, W, batch=B)
    op_full = build_operator(m, (H, W), maps)
    # unsampled entries are ignored (even NaN placeholders); sampled ones must be finite
    y = torch.where(op_full.broadcast_mask(kspace) > 0, kspace, torch.zeros_like(kspace))
    op_full.check_measurement(y)
    scale = intensity_scale(y, m)

    pr = _resolve_prior(method, prior, None)
    device = _device_of(pr.denoiser) if pr is not None else kspace.device
    if pr is not None and pr.size is not None and pr.size != H:
        import warnings

        warnings.warn(
            f"the prior was trained on {pr.size}x{pr.size} images; applying it to {H}x{W}"
            " fully convolutionally",
            stacklevel=2,
        )
    solver_name = solver or spec.solver
    if solver_name in MR_SAMPLERS and method != "irsde":
        raise ValueError(f"solver {solver_name!r} samples the irsde prior only; got {method!r}")
    if solver_name is not None and spec.solver is not None and solver_name not in MR_SAMPLERS:
        from sciffusion.solvers import get_solver

        if get_solver(solver_name).kind == "discrete":
            raise ValueError(f"{solver_name!r} samples tokens; choose a continuous solver")
    steps = int(nfe or spec.nfe)
    S = 1 if spec.prior is None else int(n_samples)
    means, stds, samples = [], [], []
    calls = 0
    t0 = time.perf_counter()
    for b in range(B):
        mb = m if m.ndim == 1 else m[b]
        mapsb = None if maps is None else (maps if maps.ndim == 3 else maps[b])
        s = float(scale[b])
        yb = (y[b : b + 1] / s).to(device)
        sig = float(sigma) / s
        op = ChannelMRI(build_operator(mb.to(device), (H, W), _to(mapsb, device)))
        if spec.prior is None:
            x = _classical(method, op, yb, opts)  # (1, 2, H, W): one "sample"
            n_calls = 0
        else:
            den = _Counting(pr.denoiser)
            # guidance transforms enable gradients themselves; RED-Diff optimises with Adam
            with torch.set_grad_enabled(method == "red_diff"):
                x = _diffusion(
                    method, den, op, yb, sig, S, solver_name, steps, generator, opts, progress
                )
            n_calls = den.calls
        calls = max(calls, n_calls)
        z = channels_to_image(x.detach().float()).to(kspace.device) * s  # (S, H, W) complex
        samples.append(z)
        means.append(z.mean(0))
        stds.append(z.abs().std(0) if z.shape[0] > 1 else torch.zeros(H, W))
        if callback is not None:
            callback({"slice": b, "of": B})
    sec = (time.perf_counter() - t0) / B
    return Reconstruction(
        torch.stack(means),
        torch.stack(stds),
        torch.stack(samples),
        scale,
        calls,
        sec,
    )


def _to(v: Tensor | None, device) -> Tensor | None:
    return None if v is None else v.to(device)


def _classical(method: str, op: ChannelMRI, y: Tensor, opts: dict) -> Tensor:
    if method == "zero_filled":
        return op.A_adjoint(y)
    unknown = set(opts) - {"lam", "n_iter"}
    if unknown:
        raise ValueError(f"tv takes options lam, n_iter; got {sorted(unknown)}")
    x = tv_admm(op.op, y, lam=float(opts.get("lam", 5e-3)), n_iter=int(opts.get("n_iter", 100)))
    from .channels import image_to_channels

    return image_to_channels(x)


_KNOBS = {
    "hard": {"spacing", "eta"},
    "prox": {"spacing", "eta", "lam"},
    "dps": {"spacing", "eta", "zeta", "ref_steps"},
    "pigdm": {"spacing", "eta", "weight"},
    "red_diff": {"spacing", "lam", "lr", "weighting"},
    "smc": {"spacing", "n_particles", "c_twist"},
    "cond": {"spacing", "eta", "dc", "lam"},
    "irsde": {"spacing", "eta", "dc", "lam"},
}


def _warn_if_degenerate(ess: Tensor, n_particles: int) -> None:
    """Warn when SMC's weights collapsed at most steps: then every particle descends from one
    ancestor and the samples' spread says little about the posterior (seen on 64 x 64 phantoms
    at sigma = 0.01 with 8 particles: ESS ~ 1 at most of 20 steps, std 0)."""
    med = float(ess.median()) if ess.numel() else float(n_particles)
    if n_particles > 1 and med < max(1.5, 0.1 * n_particles):
        warnings.warn(
            f"smc: the particle weights degenerated (median effective sample size {med:.2f} of"
            f" {n_particles} particles over {ess.numel()} steps), so the particles share few"
            " ancestors and their std understates the posterior spread; use more particles"
            " (n_particles), a larger c_twist, or method 'cond' for uncertainty maps",
            RuntimeWarning,
            stacklevel=4,
        )


def _diffusion(method, den, op, y, sig, S, solver, steps, generator, opts, progress) -> Tensor:
    """``S`` samples ``(S, 2, H, W)`` of one slice (normalised units)."""
    from sciffusion import solvers
    from sciffusion.inverse import dc as DC

    unknown = set(opts) - _KNOBS[method]
    if unknown:
        raise ValueError(
            f"method {method!r} takes options {sorted(_KNOBS[method])}; got {sorted(unknown)}"
        )
    process = den.process
    grid = solvers.make_grid(process, steps, opts.get("spacing", "log_snr"))
    shape = (S, *op.in_shape)
    dev = y.device
    yS = y.expand(S, *y.shape[1:])
    solver_kw: dict[str, Any] = {}
    if "eta" in opts:
        solver_kw["eta"] = float(opts["eta"])

    if method == "red_diff":
        from sciffusion.inverse.red_diff import red_diff

        return red_diff(
            den,
            op,
            yS,
            grid,
            lam=float(opts.get("lam", 0.25)),
            lr=float(opts.get("lr", 0.1)),
            weighting=str(opts.get("weighting", "linear")),
            generator=generator,
            progress=progress,
        )
    if method == "smc":
        from sciffusion.inverse.smc import resample, twisted_smc

        if sig <= 0:
            raise ValueError("smc needs a noise level sigma > 0 (a proper likelihood)")
        K = int(opts.get("n_particles", 16))
        res = twisted_smc(
            den,
            op,
            y,
            grid,
            sigma_y=sig,
            n_particles=K,
            c_twist=float(opts.get("c_twist", 1.0)),
            generator=generator,
            progress=progress,
        )
        _warn_if_degenerate(res.ess, K)
        return resample(res, generator)  # K equally weighted particles

    dc_kind = opts.get("dc", "prox" if method == "cond" else None)
    if dc_kind not in ("hard", "prox", None):
        raise ValueError(f"{method}: dc must be 'hard', 'prox' or None; got {dc_kind!r}")
    if method == "prox":
        dc_kind = "prox"
    elif method == "hard":
        dc_kind = "hard"
    if dc_kind == "prox" and sig <= 0:
        dc_kind = "hard"  # noiseless data: the proximal map is the projection
    dc_kw = {"sigma_y": sig, "lam": float(opts.get("lam", 7.0))} if dc_kind == "prox" else {}

    cond = None
    if method == "irsde":
        cond = op.A_adjoint(yS)  # mu: the zero-filled image
        x_T = process.prior_sample(shape, generator=generator, mu=cond.cpu()).to(dev)
    else:
        x_T = process.prior_sample(shape, generator=generator).to(dev)
    if method == "dps":
        kw = {"zeta": float(opts.get("zeta", 1.0))}
        if "ref_steps" in opts:
            kw["ref_steps"] = int(opts["ref_steps"])
        D = DC.dps(den, op, yS, **kw)
    elif method == "pigdm":
        D = DC.pigdm(den, op, yS, sigma_y=sig, weight=float(opts.get("weight", 1.0)))
    elif method == "cond":
        zf = op.A_adjoint(yS)
        if dc_kind is None:
            D = DC.with_condition(den, zf)
        else:
            D = DC.conditional_dc(den, op, yS, dc=dc_kind, condition=zf, **dc_kw)
    elif dc_kind == "hard":
        D = DC.hard_dc(den, op, yS)
    elif dc_kind == "prox":
        D = DC.prox_dc(den, op, yS, **dc_kw)
    else:
        D = den
    if solver == "mr_sampler":
        from sciffusion.inverse.mean_reverting import mr_sampler

        # MaRS grid (lambda_min clipping, uniform t, final jump); start mu + sigma(t_0) z
        return mr_sampler(D, cond, num_steps=steps, generator=generator, progress=progress)
    if solver == "ir_sde_em":
        from sciffusion.inverse.mean_reverting import ir_sde_euler_maruyama

        return ir_sde_euler_maruyama(
            D, x_T, grid, cond=cond, generator=generator, progress=progress
        )
    return solvers.sample(
        solver, D, x_T, grid, cond=cond, generator=generator, progress=progress, **solver_kw
    )
