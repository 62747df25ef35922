"""Assignment 01, change of variables (``solutions/01_change_of_variables``; book chapter 2):
1D densities of transformed variables, the affine bijector and the density of ``x = Az + b``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.checks import check_bijector
from nf_course.grading_checks.common import GradingCheckError, check_close, randn


def check_affine_log_density(affine_log_density: Callable[..., Tensor]) -> None:
    """``affine_log_density(x, scale, shift, base_log_prob)`` for Gaussian bases, any sign."""
    normal = torch.distributions.Normal(0.0, 1.0)
    x = torch.linspace(-6.0, 6.0, 41, dtype=torch.float64)
    for scale, shift in ((-2.5, 1.3), (0.4, -0.7), (-0.3, 0.0)):
        got = affine_log_density(x, scale, shift, normal.log_prob)
        expected = torch.distributions.Normal(shift, abs(scale)).log_prob(x)
        check_close(got, expected, what=f"log p_X(x) for X = {scale}·Z + {shift}", inputs=x)


def check_exp_normal_log_density(exp_normal_log_density: Callable[[Tensor], Tensor]) -> None:
    """Log-normal density: values, ``-inf`` (not NaN) for ``x ≤ 0``, total mass one."""
    x = torch.tensor([-3.0, -1e-3, 0.0, 1e-4, 0.03, 0.7, 1.0, 4.5, 30.0], dtype=torch.float64)
    expected = torch.full_like(x, -math.inf)
    positive = x > 0
    expected[positive] = torch.distributions.LogNormal(0.0, 1.0).log_prob(x[positive])
    check_close(exp_normal_log_density(x), expected, what="log p_X(x) for X = exp(Z)", inputs=x)
    grid = torch.linspace(1e-6, 60.0, 600_001, dtype=torch.float64)
    mass = torch.trapezoid(exp_normal_log_density(grid).exp(), grid).item()
    if abs(mass - 1.0) > 1e-3:
        raise GradingCheckError(f"p_X integrates to {mass:.6g} over (0, 60], expected 1")


def _affine_case(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A 3x3 matrix with a negative determinant, a shift and a batch of points."""
    A = randn(3, 3, seed=seed) + 2 * torch.eye(3, dtype=torch.float64)
    if torch.linalg.det(A) > 0:
        A = A[[1, 0, 2]]
    return A, randn(3, seed=seed + 1), 2 * randn(32, 3, seed=seed + 2)


def check_affine_bijector(affine_bijector: Callable[[Tensor, Tensor], nn.Module]) -> None:
    """``AffineBijector(A, b)``: every bijector check, and ``forward`` is ``A⁻¹(x - b)``."""
    for seed in (11, 23):
        A, b, x = _affine_case(seed)
        layer = affine_bijector(A, b)
        check_bijector(layer, x, z=randn(32, 3, seed=seed + 3))
        z, _ = layer.forward(x)
        expected = torch.linalg.solve(A, (x - b).T).T
        check_close(
            z, expected, what="forward(x) (the normalizing direction z = A⁻¹(x − b))", inputs=x
        )


def check_linear_log_density(linear_log_density: Callable[..., Tensor]) -> None:
    """``linear_log_density(x, A, b)`` against the Gaussian ``N(b, A Aᵀ)``."""
    for seed in (31, 47):
        A, b, x = _affine_case(seed)
        expected = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x)
        got = linear_log_density(x, A, b)
        check_close(got, expected, what="log p_X(x) for X = A Z + b", inputs=x)
