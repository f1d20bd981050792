"""Denoising networks ``net(x, c_noise, cond=None) -> out`` and their registry.

>>> net = build_net("unet2d", channels=2, base=32)      # config = plain keywords (JSON)
>>> D = sciffusion.Denoiser(net, process, "eps")

Conditions (vector, channel-concatenated, masks) follow one convention: see
:mod:`sciffusion.nets.base`.
"""

from .base import NETS, Net, NetCond, build_net, register_net, split_cond
from .embeddings import NoiseEmbedding, sinusoidal_features
from .mlp import MLP
from .transformer import Transformer
from .unet1d import UNet1D
from .unet2d import UNet2D

__all__ = [
    "MLP",
    "NETS",
    "Net",
    "NetCond",
    "NoiseEmbedding",
    "Transformer",
    "UNet1D",
    "UNet2D",
    "build_net",
    "register_net",
    "sinusoidal_features",
    "split_cond",
]
