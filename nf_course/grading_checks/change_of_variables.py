"""Assignment 01, change of variables (``solutions/01_change_of_variables``; book chapter 2):
1D densities of transformed variables, the affine bijector and the density of ``x = Az + b``.

The inputs are chosen so that no wrong formula is right by accident: bases that are neither
standard nor symmetric about 0 (a ``|a|`` in place of ``a``, or a hard-coded ``N(0, 1)``, gives
other values), inputs of several shapes, matrices of both determinant signs that are neither
symmetric nor orthogonal, non-zero shifts, and batch sizes other than the dimension (one of
them ``B = 1``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.checks import check_bijector
from nf_course.grading_checks.common import GradingCheckError, check_close, randn

LogProb = Callable[[Tensor], Tensor]


def _uniform_0_2(z: Tensor) -> Tensor:
    """log-density of U[0, 2]: ``-log 2`` inside, ``-inf`` outside."""
    inside = (z >= 0) & (z <= 2)
    return torch.where(inside, torch.full_like(z, -math.log(2.0)), torch.full_like(z, -math.inf))


# (name, log-density of Z) for the bases of the 1D affine task: a shifted and widened normal
# (not symmetric about 0), a skewed Gumbel and a uniform with a bounded support.
_BASES: dict[str, LogProb] = {
    "N(0.6, 1.3²)": torch.distributions.Normal(0.6, 1.3).log_prob,
    "Gumbel(0.2, 0.8)": torch.distributions.Gumbel(0.2, 0.8).log_prob,
    "U[0, 2]": _uniform_0_2,
}


def _unchanged(name: str, before: Tensor, after: Tensor) -> None:
    if not torch.equal(before, after):
        raise GradingCheckError(
            f"{name} modified its input x in place; compute on a new tensor (torch.where, "
            "arithmetic) instead of assigning into x"
        )


def check_affine_log_density(affine_log_density: Callable[..., Tensor]) -> None:
    """``affine_log_density(x, scale, shift, base_log_prob)`` for scales of both signs, bases
    that are not standard normal, and inputs of several shapes."""
    def grid(low: float, high: float) -> Tensor:
        return torch.linspace(low, high, 49, dtype=torch.float64)

    # Each grid keeps log p_Z above -250 (code that goes through exp and log stays finite)
    # and misses the uniform's support boundaries -2.5 and 0.5.
    cases = (
        (-2.5, 1.3, "N(0.6, 1.3²)", grid(-6.1, 5.9)),
        (0.4, -0.7, "Gumbel(0.2, 0.8)", grid(-1.9, 5.9).reshape(7, 7)),
        (-0.3, 2.0, "Gumbel(0.2, 0.8)", grid(-4.1, 2.9)),
        (-1.5, 0.5, "U[0, 2]", grid(-6.1, 5.9).reshape(7, 7, 1)),
    )
    for scale, shift, base, x in cases:
        log_prob = _BASES[base]
        expected = log_prob((x - shift) / scale) - math.log(abs(scale))
        before = x.clone()
        got = affine_log_density(x, scale, shift, log_prob)
        _unchanged("affine_log_density", before, x)
        check_close(
            got,
            expected,
            what=f"log p_X(x) for X = {scale}·Z + {shift}, Z ~ {base}, x of shape "
            f"{tuple(x.shape)}",
            inputs=x if x.dim() == 1 else None,
        )


def check_exp_normal_log_density(exp_normal_log_density: Callable[[Tensor], Tensor]) -> None:
    """Log-normal density: values, ``-inf`` (not NaN) for ``x ≤ 0``, any shape, total mass one."""
    x = torch.tensor([-3.0, -1e-3, 0.0, 1e-4, 0.03, 0.7, 1.0, 4.5, 30.0], dtype=torch.float64)
    for shaped in (x, x.reshape(3, 3)):
        expected = torch.full_like(shaped, -math.inf)
        positive = shaped > 0
        expected[positive] = torch.distributions.LogNormal(0.0, 1.0).log_prob(shaped[positive])
        before = shaped.clone()
        got = exp_normal_log_density(shaped)
        _unchanged("exp_normal_log_density", before, shaped)
        check_close(
            got,
            expected,
            what=f"log p_X(x) for X = exp(Z), x of shape {tuple(shaped.shape)}",
            inputs=shaped if shaped.dim() == 1 else None,
        )
    grid = torch.linspace(1e-6, 60.0, 600_001, dtype=torch.float64)
    mass = torch.trapezoid(exp_normal_log_density(grid).exp(), grid).item()
    if abs(mass - 1.0) > 1e-3:
        raise GradingCheckError(f"p_X integrates to {mass:.6g} over (0, 60], expected 1")


def _affine_case(dim: int, batch: int, seed: int, *, det_sign: int) -> tuple[Tensor, ...]:
    """A generic ``dim × dim`` matrix (not symmetric, not orthogonal) whose determinant has the
    sign ``det_sign``, a non-zero shift, ``batch`` data points and ``batch`` noise points."""
    A = randn(dim, dim, seed=seed) + 2 * torch.eye(dim, dtype=torch.float64)
    if torch.sign(torch.linalg.det(A)) != det_sign:
        A[0] = -A[0]
    b = randn(dim, seed=seed + 1) + 0.5
    return A, b, 2 * randn(batch, dim, seed=seed + 2) + b, randn(batch, dim, seed=seed + 3)


# (dim, batch, seed, sign of det A): B ≠ D everywhere, so that sums over the wrong axis or
# transposed solves cannot be right by accident.
_AFFINE_CASES = ((3, 32, 11, -1), (5, 4, 23, 1), (2, 9, 37, -1))


def check_affine_bijector(affine_bijector: Callable[[Tensor, Tensor], nn.Module]) -> None:
    """``AffineBijector(A, b)``: ``forward`` is ``A⁻¹(x - b)`` and ``inverse`` is ``Az + b``,
    every bijector check passes, with derivatives in ``A`` and ``b`` in both directions."""
    for dim, batch, seed, det_sign in _AFFINE_CASES:
        A, b, x, z = _affine_case(dim, batch, seed, det_sign=det_sign)
        setting = f"D = {dim}, det A {'< 0' if det_sign < 0 else '> 0'}"
        layer = affine_bijector(A, b)
        check_bijector(layer, x, z=z, differentiable_inverse=True)
        z_got, _ = layer.forward(x)
        check_close(
            z_got,
            torch.linalg.solve(A, (x - b).T).T,
            what=f"forward(x) ({setting}; the normalizing direction z = A⁻¹(x − b))",
            inputs=x,
        )
        x_got, _ = layer.inverse(z)
        check_close(
            x_got,
            z @ A.T + b,
            what=f"inverse(z) ({setting}; the generative direction x = A z + b)",
            inputs=z,
        )


def check_linear_log_density(linear_log_density: Callable[..., Tensor]) -> None:
    """``linear_log_density(x, A, b)`` against the Gaussian ``N(b, A Aᵀ)``, one sample too."""
    for dim, batch, seed, det_sign in ((3, 32, 31, -1), (5, 7, 47, 1), (4, 1, 53, -1)):
        A, b, x, _ = _affine_case(dim, batch, seed, det_sign=det_sign)
        expected = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x)
        got = linear_log_density(x, A, b)
        check_close(
            got,
            expected,
            what=f"log p_X(x) for X = A Z + b (x of shape {tuple(x.shape)})",
            inputs=x,
        )
