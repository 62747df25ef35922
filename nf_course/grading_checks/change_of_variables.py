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


def _bases() -> dict[str, LogProb]:
    """The bases of the 1D affine task by name: a shifted and widened normal (not symmetric
    about 0), a skewed Gumbel and a uniform with a bounded support. Built on demand: making a
    distribution imports sympy (seconds), which every assignment would pay at import."""
    return {
        "N(0.6, 1.3²)": torch.distributions.Normal(0.6, 1.3).log_prob,
        "Gumbel(0.2, 0.8)": torch.distributions.Gumbel(0.2, 0.8).log_prob,
        "U[0, 2]": _uniform_0_2,
    }


def _call(function: Callable[..., object], setting: str, x: Tensor, *rest: object) -> object:
    """``function(x, *rest)``; an exception, or ``x`` modified in place, becomes a
    :class:`GradingCheckError` naming the call."""
    name = getattr(function, "__name__", "your function")
    before = x.clone()
    try:
        result = function(x, *rest)
    except Exception as exc:
        raise GradingCheckError(f"{name} raised {type(exc).__name__} ({setting}): {exc}") from None
    if not torch.equal(before, x):
        raise GradingCheckError(
            f"{name} modified its input x in place; compute on a new tensor (torch.where, "
            "arithmetic) instead of assigning into x"
        )
    return result


def _offset_cause(got: Tensor, expected: Tensor, terms: dict[str, float]) -> str:
    """When ``got − expected`` is one constant at every finite input: the term of ``terms``
    (cause → value) it equals, or that a constant term is off; else ``""``."""
    finite = torch.isfinite(expected)
    difference = (got.detach().double() - expected)[finite]
    if difference.numel() == 0 or not bool(torch.isfinite(difference).all()):
        return ""
    offset = float(difference.mean())
    if float((difference - offset).abs().max()) > 1e-6:
        return ""
    for cause, value in terms.items():
        if abs(offset - value) < 1e-6:
            return f"\n  likely cause: {cause}"
    if difference.numel() < 2:
        return ""
    return f"\n  got − expected is {offset:.6g} at every input: a constant term is off"


def _close(
    got: object,
    expected: Tensor,
    *,
    what: str,
    inputs: Tensor | None = None,
    terms: dict[str, float] | None = None,
) -> None:
    """:func:`check_close` with tolerances for the precision the student computed in (float32
    results carry float32 rounding, float64 ones may hold a constant rounded to float32) and,
    given ``terms``, the likely cause of a constant offset."""
    single = isinstance(got, Tensor) and got.dtype == torch.float32
    tolerance = 1e-4 if single else 1e-6
    try:
        check_close(got, expected, what=what, inputs=inputs, atol=tolerance, rtol=tolerance)
    except GradingCheckError as error:
        cause = _offset_cause(got, expected, terms) if terms is not None else ""
        raise GradingCheckError(f"{error}{cause}") from None


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
    bases = _bases()
    for scale, shift, base, x in cases:
        log_prob = bases[base]
        expected = log_prob((x - shift) / scale) - math.log(abs(scale))
        got = _call(
            affine_log_density, f"scale = {scale}, shift = {shift}", x, scale, shift, log_prob
        )
        _close(
            got,
            expected,
            what=f"log p_X(x) for X = {scale}·Z + {shift}, Z ~ {base}, x of shape {tuple(x.shape)}",
            inputs=x if x.dim() == 1 else None,
            terms={
                "the term −log|a| is missing": math.log(abs(scale)),
                "log|a| enters with the wrong sign: log p_X(x) = log p_Z((x − c)/a) − log|a|": (
                    2 * math.log(abs(scale))
                ),
            },
        )


def check_exp_normal_log_density(exp_normal_log_density: Callable[[Tensor], Tensor]) -> None:
    """Log-normal density: values, ``-inf`` (not NaN) for ``x ≤ 0``, any shape, total mass one."""
    x = torch.tensor([-3.0, -1e-3, 0.0, 1e-4, 0.03, 0.7, 1.0, 4.5, 30.0], dtype=torch.float64)
    for shaped in (x, x.reshape(3, 3)):
        expected = torch.full_like(shaped, -math.inf)
        positive = shaped > 0
        expected[positive] = torch.distributions.LogNormal(0.0, 1.0).log_prob(shaped[positive])
        got = _call(exp_normal_log_density, f"x of shape {tuple(shaped.shape)}", shaped)
        _close(
            got,
            expected,
            what=f"log p_X(x) for X = exp(Z), x of shape {tuple(shaped.shape)}",
            inputs=shaped if shaped.dim() == 1 else None,
        )
    grid = torch.linspace(1e-6, 60.0, 600_001, dtype=torch.float64)
    density = _call(exp_normal_log_density, "x on a grid of (0, 60]", grid).exp()
    mass = torch.trapezoid(density, grid).item()
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
        _close(
            z_got,
            torch.linalg.solve(A, (x - b).T).T,
            what=f"forward(x) ({setting}; the normalizing direction z = A⁻¹(x − b))",
            inputs=x,
        )
        x_got, _ = layer.inverse(z)
        _close(
            x_got,
            z @ A.T + b,
            what=f"inverse(z) ({setting}; the generative direction x = A z + b)",
            inputs=z,
        )


def _linear_density_terms(A: Tensor, batch: int) -> dict[str, float]:
    """The constant offsets of the usual mistakes in ``log p_X`` for ``X = AZ + b``."""
    dim = A.shape[0]
    log_abs_det = float(torch.linalg.slogdet(A).logabsdet)
    terms = {
        "the log-det term −log|det A| is missing": log_abs_det,
        "log|det A| enters with the wrong sign: log p_X(x) = log p_Z(z) + forward's log_det, "
        "and forward's log_det is −log|det A|": 2 * log_abs_det,
        "the normalizing constant −(D/2)·log 2π is missing": dim / 2 * math.log(2 * math.pi),
    }
    constant = f"the normalizing constant is −(D/2)·log 2π with D = x.shape[1] = {dim}"
    if batch != dim:
        terms[f"{constant}, not the batch size x.shape[0] = {batch}"] = (
            (dim - batch) / 2 * math.log(2 * math.pi)
        )
    for used in range(1, 2 * dim + 1):
        if used not in (dim, batch):
            terms[f"{constant}, not {used}"] = (dim - used) / 2 * math.log(2 * math.pi)
    return terms


def check_linear_log_density(linear_log_density: Callable[..., Tensor]) -> None:
    """``linear_log_density(x, A, b)`` against the Gaussian ``N(b, A Aᵀ)``, one sample too."""
    for dim, batch, seed, det_sign in ((3, 32, 31, -1), (5, 7, 47, 1), (4, 1, 53, -1)):
        A, b, x, _ = _affine_case(dim, batch, seed, det_sign=det_sign)
        expected = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x)
        got = _call(linear_log_density, f"x of shape {tuple(x.shape)}", x, A, b)
        _close(
            got,
            expected,
            what=f"log p_X(x) for X = A Z + b (x of shape {tuple(x.shape)})",
            inputs=x,
            terms=_linear_density_terms(A, batch),
        )
