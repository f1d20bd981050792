"""Operators built from others: composition, stacking, real<->complex embeddings, non-linear maps.

A composition or stack of linear operators is linear (its ``pinv`` and prox use CG on the normal
equations); anything involving a non-linear :class:`Operator` is non-linear, with the data-fit
gradient ``J^H (A(x) - y)`` by autograd (:meth:`Operator.grad`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..complex import from_channels, to_channels
from .operators import LinearOperator, Operator, _per_sample, register_operator

__all__ = [
    "ChannelsToComplex",
    "Composed",
    "ComposedNonlinear",
    "Nonlinear",
    "RealToComplex",
    "Stacked",
    "compose",
]


def _check_chain(outer: Operator, inner_op: Operator) -> None:
    if (
        tuple(outer.in_shape) != tuple(inner_op.out_shape)
        or outer.in_complex != inner_op.out_complex
    ):
        raise ValueError(
            f"cannot compose {type(outer).__name__} (input {tuple(outer.in_shape)},"
            f" {'complex' if outer.in_complex else 'real'}) after {type(inner_op).__name__}"
            f" (output {tuple(inner_op.out_shape)},"
            f" {'complex' if inner_op.out_complex else 'real'}); the shapes and kinds must match"
        )


class _Chain(Operator):
    """``A = A_k o ... o A_1`` (``ops`` listed outermost first): shapes checked link by link."""

    def __init__(self, *ops: Operator) -> None:
        if len(ops) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two operators")
        for outer, inner_op in itertools.pairwise(ops):
            _check_chain(outer, inner_op)
        self.ops = tuple(ops)
        self.in_shape, self.in_complex = ops[-1].in_shape, ops[-1].in_complex
        self.out_shape, self.out_complex = ops[0].out_shape, ops[0].out_complex

    def A(self, x: Tensor) -> Tensor:
        for op in reversed(self.ops):
            x = op.A(x)
        return x


class Composed(_Chain, LinearOperator):
    """``A = A_k ... A_2 A_1`` for linear operators (``ops`` listed outermost first)."""

    def A_adjoint(self, y: Tensor) -> Tensor:
        for op in self.ops:
            y = op.A_adjoint(y)
        return y


class ComposedNonlinear(_Chain):
    """``A = A_k o ... o A_1`` where at least one factor is non-linear."""


def compose(*ops: Operator) -> Operator:
    """``compose(A2, A1)(x) = A2(A1(x))``; linear iff every factor is (also ``A2 @ A1``)."""
    if all(isinstance(op, LinearOperator) for op in ops):
        return Composed(*ops)
    return ComposedNonlinear(*ops)


class Stacked(LinearOperator):
    """``A x = [A_1 x; A_2 x; ...]``: flattened outputs concatenated, shape ``(sum m_i,)``.

    All operators share the input; the outputs must be all real or all complex.
    """

    def __init__(self, *ops: LinearOperator) -> None:
        if len(ops) < 2:
            raise ValueError("Stacked needs at least two operators")
        first = ops[0]
        for op in ops[1:]:
            if tuple(op.in_shape) != tuple(first.in_shape) or op.in_complex != first.in_complex:
                raise ValueError(
                    f"stacked operators must share the input: {type(op).__name__} takes"
                    f" {tuple(op.in_shape)}, {type(first).__name__} takes {tuple(first.in_shape)}"
                )
        kinds = {op.out_complex for op in ops}
        if len(kinds) > 1:
            raise TypeError(
                "stacked outputs must be all real or all complex; embed the real ones with"
                " RealToComplex first"
            )
        self.ops = tuple(ops)
        self.sizes = [math.prod(op.out_shape) for op in ops]
        self.in_shape, self.in_complex = first.in_shape, first.in_complex
        self.out_shape, self.out_complex = (sum(self.sizes),), kinds.pop()

    def A(self, x: Tensor) -> Tensor:
        return torch.cat([op.A(x).reshape(x.shape[0], -1) for op in self.ops], dim=1)

    def A_adjoint(self, y: Tensor) -> Tensor:
        parts = torch.split(y, self.sizes, dim=1)
        out = None
        for op, part in zip(self.ops, parts, strict=True):
            term = op.A_adjoint(part.reshape(y.shape[0], *op.out_shape))
            out = term if out is None else out + term
        return out


class RealToComplex(LinearOperator):
    """Embed real data as complex with zero imaginary part; ``A^H y = Re y``, ``A^H A = I``.

    Compose a complex operator after it to measure real images: ``FFTMask(...) @ RealToComplex(s)``.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.in_shape = self.out_shape = tuple(int(s) for s in shape)
        self.in_complex, self.out_complex = False, True

    def A(self, x: Tensor) -> Tensor:
        return torch.complex(x, torch.zeros_like(x))

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y.real

    def pinv(self, y: Tensor, **_) -> Tensor:
        return y.real

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        r = _per_sample(rho, z)
        return (y.real + r * z) / (1 + r)


class ChannelsToComplex(LinearOperator):
    """Network channels to complex data: ``(2C, *S)`` real -> ``(C, *S)`` complex.

    The one documented conversion (:func:`sciffusion.complex.from_channels`); an isometry, so
    ``A^H = A^-1 = to_channels``.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 1 or shape[0] % 2:
            raise ValueError(f"ChannelsToComplex needs (2C, *S) real input; got {shape}")
        self.in_shape = shape
        self.out_shape = (shape[0] // 2, *shape[1:])
        self.in_complex, self.out_complex = False, True

    def A(self, x: Tensor) -> Tensor:
        return from_channels(x)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return to_channels(y)

    def pinv(self, y: Tensor, **_) -> Tensor:
        return to_channels(y)

    def prox_l2(self, z: Tensor, rho, y: Tensor, **_) -> Tensor:
        r = _per_sample(rho, z)
        return (to_channels(y) + r * z) / (1 + r)


class Nonlinear(Operator):
    """Any differentiable callable ``fn(x (B, *in_shape)) -> (B, *out_shape)`` as an operator.

    ``grad(x, y) = J(x)^H (fn(x) - y)`` and ``vjp(x, v) = J(x)^H v`` come from autograd, which is
    all DPS-style guidance needs.
    """

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        *,
        in_complex: bool = False,
        out_complex: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Nonlinear needs a callable; got {type(fn).__name__}")
        self.fn = fn
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.in_complex, self.out_complex = bool(in_complex), bool(out_complex)

    def A(self, x: Tensor) -> Tensor:
        return self.fn(x)


# -- registry --------------------------------------------------------------------------------------
@register_operator("composed_fft_real")
def _composed(g: torch.Generator) -> Composed:
    from .fourier import FFTMask

    mask = torch.rand(5, generator=g, dtype=torch.float64) > 0.4
    return FFTMask(mask, in_shape=(4, 5)) @ RealToComplex((4, 5))


@register_operator("stacked")
def _stacked(g: torch.Generator) -> Stacked:
    from .linear import Downsample, Mask

    return Stacked(Mask(torch.rand(4, 4, generator=g) > 0.5), Downsample((4, 4), 2))


@register_operator("real_to_complex")
def _r2c(g: torch.Generator) -> RealToComplex:
    return RealToComplex((3, 2))


@register_operator("channels_to_complex")
def _c2c(g: torch.Generator) -> ChannelsToComplex:
    return ChannelsToComplex((2, 3, 3))


@register_operator("nonlinear")
def _nonlinear(g: torch.Generator) -> Nonlinear:
    W = torch.randn(3, 5, generator=g, dtype=torch.float64)

    def fn(x: Tensor) -> Tensor:  # saturating measurement, e.g. a detector response
        return torch.tanh(x @ W.to(x.dtype).mT) + 0.1 * (x**2).sum(-1, keepdim=True)

    return Nonlinear(fn, (5,), (3,))
