"""``DiffusionModule``: one LightningModule for every net, process and prediction (contract 6)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..conversions import check_prediction
from ..denoiser import Denoiser, MaskedDenoiser
from ..processes import GaussianProcess, Masked, Process
from .losses import (
    TIME_SAMPLINGS,
    WEIGHTINGS,
    drop_condition,
    ema_decay_at,
    expand_mask,
    immiscible_assign,
    loss_weight,
    masked_mean,
    native_target,
    remove_mean,
    sample_time,
)

__all__ = ["DiffusionModule", "unpack_batch"]

_BATCH_KEYS = ("x0", "cond", "mask", "mu")


def unpack_batch(batch: Any) -> tuple[Tensor, Any, Tensor | None, Tensor | None]:
    """``x0``, ``cond``, ``mask``, ``mu`` from a tensor, a ``(x0, cond)`` pair or a dict."""
    if isinstance(batch, Tensor):
        return batch, None, None, None
    if isinstance(batch, Mapping):
        unknown = sorted(set(batch) - set(_BATCH_KEYS))
        if "x0" not in batch or unknown:
            raise ValueError(
                f"a training batch dict needs 'x0' and may hold {list(_BATCH_KEYS[1:])}; got keys"
                f" {sorted(batch)}. Nest extra conditions inside 'cond'."
            )
        return batch["x0"], batch.get("cond"), batch.get("mask"), batch.get("mu")
    if isinstance(batch, Sequence) and not isinstance(batch, str) and 1 <= len(batch) <= 2:
        return batch[0], (batch[1] if len(batch) == 2 else None), None, None
    raise TypeError(
        f"a training batch must be a tensor x0, a pair (x0, cond) or a dict with 'x0'; got"
        f" {type(batch).__name__}"
    )


def net_condition(cond: Any, mask: Tensor | None, mu: Tensor | None) -> Any:
    """What the network (and the denoiser) receive: ``cond`` itself, or a dict when a mask or a
    mean travels with it (see :mod:`sciffusion.nets.base`)."""
    if mask is None and mu is None:
        return cond
    out: dict[str, Any] = {}
    if cond is not None:
        out["cond"] = cond
    if mask is not None:
        out["mask"] = mask
    if mu is not None:
        out["mu"] = mu
    return out


class DiffusionModule(pl.LightningModule):
    """Train ``net`` as a denoiser of ``process`` (docs/design.md, contract 6).

    Gaussian processes: draw ``t`` and noise, form ``x_t = marginal(x0, t, noise, mu)``, and
    regress the network's native output on its target with the per-sample factor
    ``w(t) / w_native(t)`` (:mod:`sciffusion.training.losses`). The masked token process: the MDLM
    loss (Sahoo et al. 2024, Eq. 10), cross-entropy on masked tokens weighted by
    ``-alpha'(t) / (1 - alpha(t))``.

    Parameters
    ----------
    net
        A network ``net(x, c_noise, cond) -> out`` (see :mod:`sciffusion.nets`).
    process
        Any process; :class:`sciffusion.Masked` selects the token loss.
    prediction
        ``eps`` (default), ``x0``, ``v``, ``score``, ``velocity`` or ``edm``; unset for tokens.
    weighting
        ``uniform`` (the prediction's own MSE), ``snr``, ``min-snr`` (``min_snr_gamma``), ``edm``.
    sigma_data
        Data standard deviation (input scaling ``c_in`` and EDM preconditioning / weighting).
    time_sampling
        ``uniform``, ``stratified``, ``lognormal`` (EDM; ``p_mean``, ``p_std``) or
        ``logit-normal`` (flows; ``logit_mean``, ``logit_std``), inside ``[t_eps, t_max]``.
    t_eps, t_max
        Time range; defaults ``process.t_min`` (1e-3 when that is 0) and ``process.t_max``.
    cond_dropout
        Probability of zeroing a sample's condition (classifier-free guidance training).
    immiscible
        Reorder each batch's noise by a linear assignment to its data (Li et al. 2024).
    zero_com
        Number of leading per-element features (coordinates) of set data ``(B, N, F)`` whose data
        and noise are centred (masked centre of mass): E(3)-style translation invariance.
    ema_decay
        EMA decay with warm-up ``min(decay, (1 + n) / (10 + n))``; ``None`` disables the EMA.
    lr, weight_decay, betas, warmup_steps
        AdamW and a linear learning-rate warm-up.
    seed
        Noise / time generators are seeded with ``seed + global_rank`` (``fit`` sets it).

    Batches are a tensor ``x0``, a pair ``(x0, cond)`` or a dict ``{"x0", "cond"?, "mask"?,
    "mu"?}``:
    ``mask`` is a bool over the leading dims of ``x0`` (``(B, N)`` for sets), True = real element;
    ``mu`` is the mean of a mean-reverting / ResShift process.
    """

    def __init__(
        self,
        net: nn.Module,
        process: Process,
        *,
        prediction: str | None = None,
        weighting: str = "uniform",
        sigma_data: float = 1.0,
        min_snr_gamma: float = 5.0,
        time_sampling: str = "uniform",
        t_eps: float | None = None,
        t_max: float | None = None,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        cond_dropout: float = 0.0,
        immiscible: bool = False,
        zero_com: int = 0,
        ema_decay: float | None = 0.999,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(process, Process):
            raise TypeError(f"process must be a sciffusion Process; got {type(process).__name__}")
        self.discrete = isinstance(process, Masked)
        if self.discrete:
            if prediction is not None or weighting != "uniform":
                raise ValueError(
                    "the masked process trains token logits with the MDLM weight; leave"
                    f" prediction and weighting unset (got {prediction!r}, {weighting!r})"
                )
            if immiscible or zero_com:
                raise ValueError("immiscible and zero_com apply to continuous data, not tokens")
        elif not isinstance(process, GaussianProcess):
            raise TypeError(f"unsupported process {type(process).__name__}")
        self.prediction = None if self.discrete else check_prediction(prediction or "eps")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; choose one of {WEIGHTINGS}")
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(
                f"unknown time_sampling {time_sampling!r}; choose one of {TIME_SAMPLINGS}"
            )
        if isinstance(zero_com, bool) or int(zero_com) < 0:
            raise ValueError(
                f"zero_com is the number of coordinate features (e.g. 3); got {zero_com!r}"
            )
        if not 0 <= cond_dropout <= 1:
            raise ValueError(f"cond_dropout must lie in [0, 1]; got {cond_dropout}")
        if ema_decay is not None and not 0 < ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None; got {ema_decay}")
        self.net = net
        self.process = process
        self.weighting, self.time_sampling = weighting, time_sampling
        self.sigma_data, self.min_snr_gamma = float(sigma_data), float(min_snr_gamma)
        t_min = process.t_min if process.t_min > 0 else 1e-3
        self.t_eps = float(t_min if t_eps is None else t_eps)
        self.t_max = float(process.t_max if t_max is None else t_max)
        self.p_mean, self.p_std = float(p_mean), float(p_std)
        self.logit_mean, self.logit_std = float(logit_mean), float(logit_std)
        self.cond_dropout, self.immiscible, self.zero_com = (
            float(cond_dropout),
            immiscible,
            int(zero_com),
        )
        self.ema_decay = ema_decay
        self.lr, self.weight_decay, self.betas = float(lr), float(weight_decay), tuple(betas)
        self.warmup_steps, self.seed = int(warmup_steps), int(seed)
        self.ema = copy.deepcopy(net).requires_grad_(False).eval() if ema_decay else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._generator: torch.Generator | None = None
        self._rng_states: Tensor | None = None

    # ---------------------------------------------------------------- randomness
    @property
    def generator(self) -> torch.Generator:
        """This rank's noise/time generator: seed ``seed + global_rank``, on the module's device."""
        g = self._generator
        if g is None or g.device != _device(self.device):
            g = torch.Generator(device=self.device)
            g.manual_seed(self.seed + self.global_rank)
            states, self._rng_states = self._rng_states, None
            if states is not None:
                if self.global_rank < states.shape[0]:
                    try:
                        g.set_state(states[self.global_rank].cpu())
                    except RuntimeError:
                        warnings.warn(
                            "the checkpoint's noise generator does not fit this device; reseeding",
                            stacklevel=2,
                        )
                else:
                    warnings.warn(
                        f"the checkpoint holds noise generators for {states.shape[0]} ranks;"
                        f" rank {self.global_rank} is reseeded",
                        stacklevel=2,
                    )
            self._generator = g
        return g

    def reset_generator(self) -> None:
        """Forget the generator (the next draw reseeds from ``seed + global_rank``)."""
        self._generator = None

    def draw_time(self, n: int, generator: torch.Generator) -> Tensor:
        """Training times ``(n,)`` (float64) from the configured distribution."""
        return sample_time(
            self.time_sampling,
            n,
            self.process,
            generator=generator,
            t_eps=self.t_eps,
            t_max=self.t_max,
            p_mean=self.p_mean,
            p_std=self.p_std,
            logit_mean=self.logit_mean,
            logit_std=self.logit_std,
            device=self.device,
        )

    def draw_noise(self, x0: Tensor, mask: Tensor | None, generator: torch.Generator) -> Tensor:
        """Noise for ``x0``: N(0, I), optionally assigned (immiscible), masked and centred.

        ``mask`` is the batch's bool mask over the leading dims of ``x0`` (or ``None``).
        """
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        m = expand_mask(mask, x0)
        if self.immiscible:
            noise = immiscible_assign(x0, noise, m)
        if m is not None:
            noise = noise * m
        if self.zero_com:
            noise = remove_mean(noise, mask, self.zero_com)
        return noise

    # ---------------------------------------------------------------- losses
    def loss(self, batch: Any, generator: torch.Generator | None = None) -> Tensor:
        """The training loss of one batch (a scalar). Draws, in order: times, dropout, noise."""
        g = self.generator if generator is None else generator
        x0, cond, mask, mu = unpack_batch(batch)
        B = x0.shape[0]
        t = self.draw_time(B, g)
        cond, _ = drop_condition(cond, self.cond_dropout, g, B)
        if self.discrete:
            return self._token_loss(x0, t, cond, mask, g)
        return self._gaussian_loss(x0, t, cond, mask, mu, g)

    def _gaussian_loss(self, x0, t, cond, mask, mu, g) -> Tensor:
        if mu is not None and not self.process.has_mean:
            raise ValueError(
                f"the batch has 'mu' but the {self.process.name!r} process has no mean; pass the"
                " observation as 'cond' instead"
            )
        if not x0.is_floating_point():
            raise TypeError(f"x0 must be a float tensor; got {x0.dtype} (tokens need Masked)")
        m = expand_mask(mask, x0)
        if m is not None:
            x0 = x0 * m
        if self.zero_com:
            x0 = remove_mean(x0, mask, self.zero_com)
        noise = self.draw_noise(x0, mask, g)
        tt = t.to(x0.dtype)
        xt = self.process.marginal(x0, tt, noise, mu)
        den = Denoiser(self.net, self.process, self.prediction, sigma_data=self.sigma_data)
        out = den.raw(xt, tt, net_condition(cond, mask, mu))
        if out.shape != x0.shape:
            raise ValueError(
                f"the network returned {tuple(out.shape)} for data {tuple(x0.shape)}; a denoising"
                " network must return its input's shape"
            )
        target = native_target(
            self.prediction, x0, noise, t, self.process, mu=mu, sigma_data=self.sigma_data
        )
        w = loss_weight(
            self.weighting,
            self.prediction,
            self.process,
            t,
            sigma_data=self.sigma_data,
            gamma=self.min_snr_gamma,
        )
        dt = torch.promote_types(out.dtype, torch.float32)  # MSE in >= float32 under autocast
        per_sample = masked_mean((out.to(dt) - target.to(dt)) ** 2, m)
        return (w.to(dt) * per_sample).mean()

    def _token_loss(self, x0, t, cond, mask, g) -> Tensor:
        proc: Masked = self.process  # type: ignore[assignment]
        proc.check_tokens(x0)
        if int(x0.max()) >= proc.mask_id:
            raise ValueError(f"training tokens must lie in [0, {proc.vocab_size - 1}] (no masks)")
        real = torch.ones_like(x0, dtype=torch.bool) if mask is None else mask
        if real.shape != x0.shape:
            raise ValueError(f"token mask must be {tuple(x0.shape)} bool; got {tuple(real.shape)}")
        u = proc.noise_like(x0, g)
        xt = torch.where(real, proc.marginal(x0, t, u), x0)
        logits = MaskedDenoiser(self.net, proc).logits(
            xt, t.float(), net_condition(cond, mask, None)
        )
        ce = F.cross_entropy(logits.transpose(1, 2).float(), x0.long(), reduction="none")
        hit = (xt == proc.mask_id) & real
        w = -proc.d_alpha(t) / (1 - proc.alpha(t))  # MDLM, Sahoo et al. 2024, Eq. 10
        per_sample = (ce * hit).sum(dim=1) / real.sum(dim=1)
        return (w.to(per_sample.dtype) * per_sample).mean()

    # ---------------------------------------------------------------- Lightning hooks
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        B = unpack_batch(batch)[0].shape[0]
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=B)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            self.net.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay
        )
        if not self.warmup_steps:
            return opt
        n = self.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / n))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA update ``ema <- d ema + (1 - d) net`` with the warm-up decay ``d``."""
        if self.ema is None:
            return
        d = ema_decay_at(int(self.ema_updates), self.ema_decay)
        for pe, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            pe.lerp_(p.detach().to(pe.dtype), 1.0 - d)
        for be, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
            be.copy_(b)
        self.ema_updates += 1

    def train(self, mode: bool = True) -> DiffusionModule:
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self.generator.get_state()
        if self._trainer is not None and self.trainer.world_size > 1:
            states = self.all_gather(state.to(self.device)).cpu()  # (world, n) uint8
        else:
            states = state[None]
        checkpoint["sciffusion_rng"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("sciffusion_rng")
        self._rng_states = states
        self._generator = None

    # ---------------------------------------------------------------- outputs
    def denoiser(self, ema: bool = True) -> Denoiser | MaskedDenoiser:
        """The trained denoiser (EMA weights unless ``ema=False`` or the EMA is disabled).

        It shares weights with this module; call ``.eval()`` on it for sampling.
        """
        net = self.ema if (ema and self.ema is not None) else self.net
        if self.discrete:
            return MaskedDenoiser(net, self.process)  # type: ignore[arg-type]
        return Denoiser(net, self.process, self.prediction, sigma_data=self.sigma_data)


def _device(d: torch.device) -> torch.device:
    if d.type == "cuda" and d.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return d
