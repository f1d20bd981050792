"""Guidance as denoiser transforms (contract 4)."""

from .cfg import cfg

__all__ = ["cfg"]
