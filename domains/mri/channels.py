"""MRI operators on network channels: the bridge between complex physics and real networks.

Physics operators (:class:`~.physics.SinglecoilMRI`, :class:`~.physics.SenseMRI`) act on complex
images ``(B, H, W)``; networks and every inverse-problem transform of :mod:`sciffusion.inverse` see
two real channels ``(B, 2, H, W)`` (:func:`sciffusion.complex.to_channels`, real part first).
:class:`ChannelMRI` is ``A o from_channels``: the same measurements from the channel layout.
``from_channels`` is an isometry of the real inner product, so the adjoint, the pseudo-inverse and
the proximal map are the complex operator's own, conjugated by the layout change (closed forms stay
closed forms; SENSE keeps its CG).
"""

from __future__ import annotations

import torch
from sciffusion.complex import from_channels, to_channels
from sciffusion.inverse.operators import LinearOperator, register_operator
from torch import Tensor

from .physics import SinglecoilMRI, _CartesianMRI

__all__ = ["ChannelMRI", "channels_to_image", "image_to_channels"]


def image_to_channels(z: Tensor) -> Tensor:
    """Complex images ``(B, H, W)`` -> network channels ``(B, 2, H, W)`` (real, imaginary)."""
    return to_channels(z.unsqueeze(1))


def channels_to_image(x: Tensor) -> Tensor:
    """Network channels ``(B, 2, H, W)`` -> complex images ``(B, H, W)``."""
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(
            f"MRI network channels are (B, 2, H, W) (real, imaginary); got {tuple(x.shape)}"
        )
    return from_channels(x)[:, 0]


class ChannelMRI(LinearOperator):
    """``A(x) = op(from_channels(x))``: a Cartesian MRI operator on ``(B, 2, H, W)`` real input.

    Parameters
    ----------
    op : SinglecoilMRI or SenseMRI
        The complex operator (its mask, maps and batch rules carry over).

    Notes
    -----
    With ``C = from_channels`` unitary (real inner product), ``A^H = C^H op^H``,
    ``A^+ = C^H op^+`` and ``prox_{A}(z) = C^H prox_{op}(C z)``: single-coil ones are exact
    (per k-space entry), SENSE ones use the operator's CG.
    """

    in_complex = False
    out_complex = True

    def __init__(self, op: _CartesianMRI) -> None:
        if not isinstance(op, _CartesianMRI):
            raise TypeError(f"ChannelMRI wraps SinglecoilMRI or SenseMRI; got {type(op).__name__}")
        self.op = op
        self.in_shape = (2, *op.img_size)
        self.out_shape = tuple(op.out_shape)
        self.batch_size = op.batch_size
        self.img_size = op.img_size
        self.has_svd = isinstance(op, SinglecoilMRI)

    @property
    def mask(self) -> Tensor:
        """The operator's column mask ``(W,)`` or ``(B, W)`` (bool)."""
        return self.op.mask

    def A(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.op.A(channels_to_image(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        return image_to_channels(self.op.A_adjoint(y))

    def normal(self, x: Tensor) -> Tensor:
        return image_to_channels(self.op.normal(channels_to_image(x)))

    def pinv(self, y: Tensor, **kw: object) -> Tensor:
        return image_to_channels(self.op.pinv(y, **kw))

    def prox_l2(self, z: Tensor, rho: float | Tensor, y: Tensor, **kw: object) -> Tensor:
        self.check_input(z)
        return image_to_channels(self.op.prox_l2(channels_to_image(z), rho, y, **kw))

    # SVD (single coil): V^H x = F C x, s = mask over rows, U = I
    def singular_values(self) -> Tensor:
        return self.op.singular_values()

    def V_adjoint(self, x: Tensor) -> Tensor:
        return self.op.V_adjoint(channels_to_image(x))

    def V(self, c: Tensor) -> Tensor:
        return image_to_channels(self.op.V(c))

    def U_adjoint(self, y: Tensor) -> Tensor:
        return self.op.U_adjoint(y)


@register_operator("mri_channels")
def _example_channels(generator: torch.Generator) -> ChannelMRI:
    """Single-coil 6 x 8 image on channels, random column mask."""
    m = torch.rand(8, generator=generator) > 0.5
    m[4] = True
    return ChannelMRI(SinglecoilMRI(m, (6, 8)))
