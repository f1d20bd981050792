"""Pure conversions between a clean estimate ``x0`` and eps / v / score / velocity (contract 2).

For a process ``x_t = alpha x0 + (1 - alpha) mu + sigma eps`` write ``y = x - mu`` and
``y0 = x0 - mu`` (``mu = 0`` unless the process has a mean). Then::

    eps      = (y - alpha y0) / sigma
    v        = alpha eps - sigma y0                        (Salimans & Ho 2022)
    score    = -eps / sigma                                (grad log p_t(x))
    velocity = alpha' y0 + sigma' eps = dx_t/dt            (flow matching)

and their inverses below. All are rank-agnostic: ``x (B, *event)``, ``t (B,)``.
"""

from __future__ import annotations

from torch import Tensor

from ._tensor import as_time, bcast
from .processes import GaussianProcess

__all__ = [
    "PREDICTIONS",
    "eps_from_x0",
    "from_x0",
    "score_from_x0",
    "to_x0",
    "v_from_x0",
    "velocity_from_x0",
    "x0_from_eps",
    "x0_from_score",
    "x0_from_v",
    "x0_from_velocity",
]

PREDICTIONS = ("eps", "x0", "v", "score", "velocity")


def _ays(x: Tensor, t: Tensor | float, process: GaussianProcess, mu: Tensor | None):
    if not isinstance(process, GaussianProcess):
        raise TypeError(
            f"conversions need a Gaussian process; {type(process).__name__} is discrete"
            " (its denoiser returns token probabilities)"
        )
    t = as_time(t, x)
    a, s = bcast(process.alpha(t), x), bcast(process.sigma(t), x)
    y = x if mu is None else x - mu
    return t, a, s, y


def _shift(y0: Tensor, mu: Tensor | None) -> Tensor:
    return y0 if mu is None else y0 + mu


def eps_from_x0(x: Tensor, t, x0: Tensor, process: GaussianProcess, *, mu: Tensor | None = None):
    _, a, s, y = _ays(x, t, process, mu)
    y0 = x0 if mu is None else x0 - mu
    return (y - a * y0) / s


def x0_from_eps(x: Tensor, t, eps: Tensor, process: GaussianProcess, *, mu: Tensor | None = None):
    _, a, s, y = _ays(x, t, process, mu)
    return _shift((y - s * eps) / a, mu)


def v_from_x0(x: Tensor, t, x0: Tensor, process: GaussianProcess, *, mu: Tensor | None = None):
    _, a, s, y = _ays(x, t, process, mu)
    y0 = x0 if mu is None else x0 - mu
    return a * (y - a * y0) / s - s * y0


def x0_from_v(x: Tensor, t, v: Tensor, process: GaussianProcess, *, mu: Tensor | None = None):
    # alpha y - sigma v = (alpha^2 + sigma^2) y0
    _, a, s, y = _ays(x, t, process, mu)
    return _shift((a * y - s * v) / (a**2 + s**2), mu)


def score_from_x0(x: Tensor, t, x0: Tensor, process: GaussianProcess, *, mu: Tensor | None = None):
    _, a, s, y = _ays(x, t, process, mu)
    y0 = x0 if mu is None else x0 - mu
    return -(y - a * y0) / s**2


def x0_from_score(
    x: Tensor, t, score: Tensor, process: GaussianProcess, *, mu: Tensor | None = None
):
    _, a, s, y = _ays(x, t, process, mu)
    return _shift((y + s**2 * score) / a, mu)


def velocity_from_x0(
    x: Tensor, t, x0: Tensor, process: GaussianProcess, *, mu: Tensor | None = None
):
    t, a, s, y = _ays(x, t, process, mu)
    da, ds = bcast(process.d_alpha(t), x), bcast(process.d_sigma(t), x)
    y0 = x0 if mu is None else x0 - mu
    return da * y0 + ds * (y - a * y0) / s


def x0_from_velocity(
    x: Tensor, t, velocity: Tensor, process: GaussianProcess, *, mu: Tensor | None = None
):
    # v = (alpha' - sigma' alpha / sigma) y0 + (sigma' / sigma) y, hence
    # y0 = (sigma v - sigma' y) / (sigma alpha' - sigma' alpha)
    t, a, s, y = _ays(x, t, process, mu)
    da, ds = bcast(process.d_alpha(t), x), bcast(process.d_sigma(t), x)
    return _shift((s * velocity - ds * y) / (s * da - ds * a), mu)


_TO_X0 = {
    "eps": x0_from_eps,
    "v": x0_from_v,
    "score": x0_from_score,
    "velocity": x0_from_velocity,
}
_FROM_X0 = {
    "eps": eps_from_x0,
    "v": v_from_x0,
    "score": score_from_x0,
    "velocity": velocity_from_x0,
}


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS and prediction != "edm":
        raise ValueError(
            f"unknown prediction {prediction!r}; choose one of {(*PREDICTIONS, 'edm')}"
        )
    return prediction


def to_x0(prediction: str, out: Tensor, x: Tensor, t, process: GaussianProcess, *, mu=None):
    """Convert a network output of type ``prediction`` to the clean estimate ``x0``."""
    check_prediction(prediction)
    if prediction == "x0":
        return out
    if prediction == "edm":
        raise ValueError("'edm' outputs need the preconditioning of sciffusion.Denoiser")
    return _TO_X0[prediction](x, t, out, process, mu=mu)


def from_x0(prediction: str, x0: Tensor, x: Tensor, t, process: GaussianProcess, *, mu=None):
    """The ``prediction``-type target that corresponds to the clean estimate ``x0``."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0
    if prediction == "edm":
        raise ValueError("'edm' targets depend on the preconditioning; see sciffusion.Denoiser")
    return _FROM_X0[prediction](x, t, x0, process, mu=mu)
