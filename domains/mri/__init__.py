"""MRI domain pack: Cartesian physics on fastMRI's conventions, masks, coils, baselines, metrics,
diffusion priors (:mod:`.prior`), reconstruction (:mod:`.recon`), active acquisition
(:mod:`.acquire`), the ``sciffusion mri`` CLI (:mod:`.cli`) and the demo.

Importing this package imports fastmri and registers the ``mri_singlecoil`` and ``mri_sense``
operators in ``sciffusion.inverse.OPERATORS``. Data (phantoms, fastMRI HDF5) live in
:mod:`sciffusion.datasets.mri`.
"""

from .acquire import Acquisition, acquire
from .baselines import cg_sense, oracle_lambda, rss_zero_filled, tv_admm, zero_filled
from .channels import ChannelMRI
from .coils import birdcage_maps, estimate_maps_lowres
from .fourier import crop_readout, fft2c, ifft2c, oversample_readout, rss
from .masks import MASK_KINDS, Mask, gaussian_mask, make_mask, realised_acceleration
from .metrics import calibration, foreground_mask, masked_ssim, nmse, per_image_metrics, psnr, ssim
from .physics import SenseMRI, SinglecoilMRI
from .prior import PriorRecipe, load_prior, train_prior
from .recon import METHODS, Reconstruction, reconstruct

__all__ = [
    "MASK_KINDS",
    "METHODS",
    "Acquisition",
    "ChannelMRI",
    "Mask",
    "PriorRecipe",
    "Reconstruction",
    "SenseMRI",
    "SinglecoilMRI",
    "acquire",
    "birdcage_maps",
    "calibration",
    "cg_sense",
    "crop_readout",
    "estimate_maps_lowres",
    "fft2c",
    "foreground_mask",
    "gaussian_mask",
    "ifft2c",
    "load_prior",
    "make_mask",
    "masked_ssim",
    "nmse",
    "oracle_lambda",
    "oversample_readout",
    "per_image_metrics",
    "psnr",
    "realised_acceleration",
    "reconstruct",
    "rss",
    "rss_zero_filled",
    "ssim",
    "train_prior",
    "tv_admm",
    "zero_filled",
]
