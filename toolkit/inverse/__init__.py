"""Inverse problems (contracts 4-5): operators, data consistency, posterior samplers."""

from .operators import OPERATORS, LinearOperator, Operator, cg, inner, register_operator

__all__ = ["OPERATORS", "LinearOperator", "Operator", "cg", "inner", "register_operator"]
