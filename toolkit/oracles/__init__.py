"""Exact oracles: the ground truth of the test suite and a teaching tool (contract 2)."""

from .discrete import DiscreteOracle, toy_discrete
from .gaussian import GaussianOracle
from .gmm import GaussianMixtureOracle, toy_gmm
from .posterior import gmm_linear_posterior, linear_gaussian_posterior
from .reference import reference_ode

__all__ = [
    "DiscreteOracle",
    "GaussianMixtureOracle",
    "GaussianOracle",
    "gmm_linear_posterior",
    "linear_gaussian_posterior",
    "reference_ode",
    "toy_discrete",
    "toy_gmm",
]
