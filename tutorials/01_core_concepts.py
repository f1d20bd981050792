# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Core concepts: processes, denoisers, exact oracles, training and sampling
#
# sciffusion is built on three contracts:
#
# 1. a **process** corrupts data in continuous time `t in [0, 1]`:
#    `x_t = alpha(t) x0 + sigma(t) eps` (`t = 0` is the data);
# 2. a **denoiser** `D(x, t, cond=None) -> x0_hat` is the only thing a sampler calls;
#    eps, v, score and flow velocity are pure conversions of it;
# 3. a **solver** is a stateless function `f(denoiser, x_T, grid)` over an explicit time grid.
#
# Because a Gaussian mixture has an *exact* denoiser for every process, we can check every claim
# below against the truth. Set `SCIFFUSION_FAST=1` for a quick run (the test-suite does).

# %%
import os

import matplotlib.pyplot as plt
import sciffusion as sf
import torch
from sciffusion import solvers

FAST = os.environ.get("SCIFFUSION_FAST") == "1"
torch.manual_seed(0)

# %% [markdown]
# ## 1. Processes
# Variance-preserving (VP), variance-exploding (VE, the EDM frame) and the linear interpolant of
# flow matching differ only in `alpha(t)` and `sigma(t)`. What solvers care about is the log
# signal-to-noise ratio `log(alpha^2 / sigma^2)`, and every process inverts it exactly.

# %%
t = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
processes = {
    "VP linear": sf.VPLinear(),
    "VP cosine": sf.VPCosine(),
    "VE (EDM)": sf.VE(),
    "flow (linear)": sf.LinearInterpolant(),
}
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for name, p in processes.items():
    axes[0].plot(t, p.alpha(t), label=name)
    axes[1].plot(t, p.sigma(t) / p.sigma(t).max(), label=name)
    axes[2].plot(t[1:-1], p.log_snr(t[1:-1]), label=name)
axes[0].set_title("alpha(t)")
axes[1].set_title("sigma(t) / max sigma")
axes[2].set_title("log-SNR(t)")
axes[2].legend()
plt.show()

p = sf.VPCosine()
lam = p.log_snr(t)
print("round-trip error of t -> log-SNR -> t:", float((p.t_of_log_snr(lam) - t).abs().max()))

# %% [markdown]
# ## 2. An exact denoiser
# For data `x0 ~ sum_k pi_k N(m_k, S_k)` the posterior mean `E[x0 | x_t]` is available in closed
# form. It is a denoiser like any trained network, so everything downstream can be tested
# against it.

# %%
gmm = sf.toy_gmm(2, "sharp")  # 8 modes on the unit circle
process = sf.VPLinear()
D = gmm.denoiser(process)

x0 = gmm.sample(2000, generator=torch.Generator().manual_seed(1))
fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
for ax, tt in zip(axes, (0.05, 0.2, 0.4, 0.7), strict=True):
    tb = torch.full((len(x0),), tt, dtype=torch.float64)
    xt = process.marginal(x0, tb, torch.randn(x0.shape, dtype=torch.float64))
    ax.scatter(*xt.T, s=2, alpha=0.3, label="x_t")
    ax.scatter(*D(xt, tb).T, s=2, alpha=0.3, label="D(x_t)")
    ax.set_title(f"t = {tt}")
    ax.set_aspect("equal")
axes[0].legend()
plt.show()

# %% [markdown]
# The conversions are pure functions: from `x0_hat` to eps, v, score or velocity and back.

# %%
from sciffusion.conversions import from_x0, to_x0

tb = torch.full((5,), 0.3, dtype=torch.float64)
xt = torch.randn(5, 2, dtype=torch.float64)
x0h = D(xt, tb)
for pred in ("eps", "v", "score", "velocity"):
    out = from_x0(pred, x0h, xt, tb, process)
    err = float((to_x0(pred, out, xt, tb, process) - x0h).abs().max())
    print(f"{pred:9s} round-trip error {err:.1e}")

# %% [markdown]
# ## 3. Solvers on an exact problem
# Sampling integrates the probability-flow ODE from noise to data. With the exact denoiser, a
# high-accuracy integration (`reference_ode`, DOP853 in float64) is the ground truth, and the
# error of each solver falls at its theoretical order.

# %%
smooth = sf.toy_gmm(2, "smooth")
Ds = smooth.denoiser(process)
xT = process.prior_sample((200, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
ref = sf.reference_ode(Ds, xT, process.t_max, process.t_min)
nfes = [10, 20, 40] if FAST else [10, 20, 40, 80, 160]
plt.figure(figsize=(5, 3.6))
for name in ("ddim", "heun", "dpmpp_2m"):
    errs = []
    for n in nfes:
        grid = solvers.make_grid(process, n, final="t_min")
        out = solvers.sample(name, Ds, xT, grid)
        errs.append(float(((out - ref) ** 2).sum(1).mean().sqrt()))
    plt.loglog(nfes, errs, "o-", label=name)
plt.xlabel("steps")
plt.ylabel("RMSE to reference ODE")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. Training a denoiser and sampling it
# `sciffusion toy` does this end to end from the command line; here is the same with the library.
# A small MLP learns the 2-D mixture with the Lightning `DiffusionModule`; we sample it with
# DPM-Solver++(2M) and compare with exact samples through the sliced Wasserstein distance, next to
# the floor between two exact sample sets of the same size.

# %%
from sciffusion.toy import ToyConfig, evaluate_toy, plot_toy, sample_toy, train_toy

cfg = ToyConfig(fast=FAST, steps=1500)
model_dir = train_toy(cfg, "runs/tutorial-01", progress=False)
samples = sample_toy(model_dir, cfg)
metrics = evaluate_toy(samples, cfg)
print({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
plot_toy(samples, cfg, metrics, "runs/tutorial-01/toy.png")

from IPython.display import Image

Image("runs/tutorial-01/toy.png")
