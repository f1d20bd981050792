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
# # MRI reconstruction with diffusion priors
#
# Accelerated MRI measures only some columns of k-space (the 2-D Fourier transform of the
# image): `y = M F x + noise`. At 8x we keep 8 of 64 columns, and the zero-filled image
# `F^H y` is full of aliasing. A diffusion prior, combined with *data consistency* (DC) in every
# reverse step, fills in the missing columns with plausible anatomy and tells us, through the
# spread of its samples, where it is unsure.
#
# This tutorial:
#
# 1. simulates a few 64x64 single-coil phantoms with complex noise (no downloads);
# 2. reconstructs them at 8x with the shipped **conditional prior + DC** and compares with
#    total-variation (TV) compressed sensing;
# 3. looks at the **posterior std** as an uncertainty map;
# 4. runs the **IR-SDE** restoration prior with the MR Sampler at 10 network calls;
# 5. lets **Active Diffusion Subsampling** (ADS) choose the columns while it reconstructs.
#
# Set `SCIFFUSION_FAST=1` for a quick run (the test-suite does).

# %%
import os

import matplotlib.pyplot as plt
import torch
from sciffusion.datasets.mri.phantoms import simulate_phantoms
from sciffusion.domains.mri import make_mask, per_image_metrics
from sciffusion.domains.mri.acquire import acquire
from sciffusion.domains.mri.figures import save_acquisition_figure, save_recon_figure
from sciffusion.domains.mri.metrics import calibration, foreground_mask
from sciffusion.domains.mri.prior import load_prior
from sciffusion.domains.mri.recon import reconstruct

FAST = os.environ.get("SCIFFUSION_FAST") == "1"
torch.set_num_threads(1)  # small images: one thread is as fast and plays well with others
N_IMAGES = 2 if FAST else 6
N_SAMPLES = 2 if FAST else 8
SIGMA = 0.01  # complex k-space noise std; images have a maximum of about 1

# %% [markdown]
# ## 1. Simulate an acquisition
#
# `simulate_phantoms` draws random-ellipse phantoms with a smooth phase, a bias field and
# texture, and their k-space with noise. The mask is fastMRI's `random` 8x mask with a fully
# sampled centre of 4% of the columns. The seed differs from the one the priors were trained
# on, so these images are held out.

# %%
g = torch.Generator().manual_seed(1234)
ph = simulate_phantoms(N_IMAGES, 64, generator=g, sigma=SIGMA)
kspace, target = ph.kspace, ph.target
mask = make_mask("random", 64, acceleration=8, center_fraction=0.04, generator=g).mask
print(f"{int(mask.sum())} of 64 columns measured; k-space {tuple(kspace.shape)} {kspace.dtype}")

zf = reconstruct(kspace, mask, method="zero_filled")
print("zero-filled PSNR", per_image_metrics(target, zf.mean.abs())["psnr"].mean().item())

# %% [markdown]
# ## 2. Conditional prior + DC vs TV
#
# `reconstruct` handles the scale in one place: the k-space is divided by the RMS of the
# calibration image (all the priors were trained at that scale) and the result is multiplied
# back. The `cond` method runs the conditional prior (zero-filled image as input channels) with
# proximal data consistency in every DDPM step; `n_samples` posterior samples give a mean and a
# per-pixel standard deviation.
#
# For TV we pick the regularisation weight on a separate validation phantom, as a careful user
# would (never on the test images).

# %%
val = simulate_phantoms(1, 64, generator=torch.Generator().manual_seed(99), sigma=SIGMA)
lams = [1e-3, 3e-3, 1e-2, 3e-2]
scores = [
    per_image_metrics(
        val.target,
        reconstruct(val.kspace, mask, method="tv", options={"lam": lam}).mean.abs(),
    )["psnr"].item()
    for lam in lams
]
lam = lams[max(range(len(lams)), key=scores.__getitem__)]
tv = reconstruct(kspace, mask, method="tv", options={"lam": lam})

cond = reconstruct(
    kspace,
    mask,
    method="cond",
    prior=load_prior("cond"),
    sigma=SIGMA,
    n_samples=N_SAMPLES,
    generator=torch.Generator().manual_seed(0),
)
for name, r in [("zero-filled", zf), (f"TV (lam={lam:g})", tv), ("cond + DC", cond)]:
    m = per_image_metrics(target, r.mean.abs(), which=("psnr", "ssim"))
    print(
        f"{name:>18}: PSNR {m['psnr'].mean():.2f} dB  SSIM {m['ssim'].mean():.3f}"
        f"  ({r.seconds:.2f} s/slice, {r.nfe} network calls)"
    )

save_recon_figure(
    "recon_8x.png",
    cond.mean,
    target=target,
    zero_filled=zf.mean,
    std=cond.std,
    mask=mask,
    title="8x: conditional prior + DC",
)
fig, ax = plt.subplots(1, 4, figsize=(12, 3))
for a, (title, img) in zip(
    ax,
    [
        ("target", target[0]),
        ("zero-filled", zf.mean[0]),
        ("TV", tv.mean[0]),
        ("cond + DC", cond.mean[0]),
    ],
    strict=True,
):
    a.imshow(img.abs(), cmap="gray", vmin=0, vmax=float(target[0].max()))
    a.set_title(title)
    a.axis("off")
plt.show()

# %% [markdown]
# ## 3. Uncertainty
#
# The std over posterior samples should be large where the reconstruction is wrong. Two checks
# on the foreground: the fraction of pixels whose error is within two standard deviations
# (about 0.95 if the posterior were Gaussian and calibrated), and the rank correlation between
# std and error.

# %%
err = (cond.mean.abs() - target).abs()
cal = calibration(cond.mean.abs(), cond.std, target, mask=foreground_mask(target))
print(f"coverage of |err| <= 2 std: {cal.coverage:.2f}; Spearman(std, |err|): {cal.spearman:.2f}")
fig, ax = plt.subplots(1, 2, figsize=(6, 3))
ax[0].imshow(err[0], cmap="magma")
ax[0].set_title("|error|")
ax[1].imshow(cond.std[0], cmap="magma")
ax[1].set_title("posterior std")
for a in ax:
    a.axis("off")
plt.show()

# %% [markdown]
# ## 4. IR-SDE + MR Sampler
#
# The mean-reverting prior starts from the zero-filled image plus noise and drifts to a clean
# image. Its reverse process is an ordinary Gaussian one in the frame `x - mu`, so the fast
# DPM-Solver++ family (the MR Sampler) applies: 10 network calls.

# %%
irsde = reconstruct(
    kspace,
    mask,
    method="irsde",
    prior=load_prior("irsde"),
    sigma=SIGMA,
    nfe=10,
    n_samples=N_SAMPLES,
    generator=torch.Generator().manual_seed(0),
)
m = per_image_metrics(target, irsde.mean.abs(), which=("psnr", "ssim"))
print(f"IR-SDE, MR Sampler 10 NFE: PSNR {m['psnr'].mean():.2f} dB, {irsde.seconds:.2f} s/slice")

# %% [markdown]
# ## 5. Active acquisition
#
# Instead of fixing the mask in advance, ADS runs a few DPS-guided particles of the
# unconditional prior and, during the reverse process, measures the column on which the
# particles disagree most. We compare it with equispaced columns at the same budget (8 columns,
# calibration block included), reconstructed by the same particle sampler.

# %%
budget = 8
kw = dict(
    budget=budget,
    prior=load_prior("uncond"),
    n_particles=4 if FAST else 16,
    nfe=20 if FAST else 50,
)
one = ph.kspace[:1]
ads = acquire(one, strategy="entropy", generator=torch.Generator().manual_seed(0), **kw)
equi = acquire(one, strategy="equispaced", generator=torch.Generator().manual_seed(0), **kw)
for name, a in [("ADS (entropy)", ads), ("equispaced", equi)]:
    psnr = per_image_metrics(target[:1], a.mean.abs())["psnr"].item()
    print(f"{name:>14}: columns {sorted(a.order[0].tolist())}  PSNR {psnr:.2f} dB")
save_acquisition_figure(
    "ads_mask.png",
    ads.order,
    64,
    steps=ads.steps,
    n_steps=kw["nfe"],
    n_initial=3,
    title="ADS: acquired columns",
)

# %% [markdown]
# The same jobs run from the command line on fastMRI files:
#
# ```
# sciffusion mri simulate --out sim --size 64
# sciffusion mri reconstruct sim/data --method cond --acceleration 8 --sigma 0.01 --out rec
# sciffusion mri acquire sim/data --strategy entropy --acceleration 8 --out acq
# sciffusion mri evaluate sim/data rec/reconstructions
# ```
