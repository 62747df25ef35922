"""The checker's public functions: :func:`check_bijector` (every property), the single checks
that graded tests call alone, and :func:`perturb_parameters`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf_course.checks.registry import BATCH_INDEPENDENCE, CHECKS, INVERTIBILITY, LOG_DET
from nf_course.checks.report import CheckReport
from nf_course.checks.runner import run_checks


def check_bijector(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None = None,
    dtype: torch.dtype | None = None,
    timeout: float | None = 60.0,
    differentiable_inverse: bool = False,
    **tolerances: float,
) -> CheckReport:
    """Run every check of :data:`CHECKS` on the batch ``x`` and return the report.

    Args:
        bijector: any object with ``forward(x) -> (z, log_det)`` and
            ``inverse(z) -> (x, log_det)``; it is not modified (checks run on a copy, or on the
            object itself with its parameters restored when it cannot be copied).
        x: a batch ``(B, …)`` of ``B ≥ 2`` points in the domain of ``forward``.
        z: optional extra points ``(B', …)`` in the domain of ``inverse`` (e.g. base samples,
            for a bijector onto the whole space); by default ``inverse`` is checked on
            ``forward(x)`` only, so maps onto a subset of the space are never rejected.
        dtype: force the dtype; by default float64, or float32 if the module fails in float64.
        timeout: seconds allowed for one call of ``forward`` or ``inverse`` (``None``: no
            limit; only enforced in the main thread on Unix).
        differentiable_inverse: the inverse must have correct derivatives too (for sampling
            with gradients, reverse-KL training); by default a non-differentiable inverse (a
            root finder run without gradients) is accepted and its log-det is checked by the
            inverse function theorem.
        **tolerances: ``atol``, ``rtol`` (round trips, batch independence, determinism) and
            ``log_det_atol``, ``log_det_rtol``; a value passes when
            ``|returned − expected| ≤ atol + rtol·|expected|``.

    Returns:
        The :class:`CheckReport` (print it for a table).

    Raises:
        BijectorCheckError: listing every failed check, with the worst sample, the error, the
            tolerance and the likely cause.
    """
    return run_checks(
        bijector,
        x,
        z=z,
        selected=list(CHECKS),
        dtype=dtype,
        timeout=timeout,
        differentiable_inverse=differentiable_inverse,
        tolerances=tolerances,
    )


def _single(
    selected: tuple[str, ...],
    bijector: object,
    x: Tensor,
    z: Tensor | None,
    dtype: torch.dtype | None,
    timeout: float | None,
    tolerances: dict[str, float],
) -> CheckReport:
    return run_checks(
        bijector,
        x,
        z=z,
        selected=selected,
        dtype=dtype,
        timeout=timeout,
        differentiable_inverse=False,
        tolerances=tolerances,
    )


def check_invertible(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None = None,
    dtype: torch.dtype | None = None,
    timeout: float | None = 60.0,
    **tolerances: float,
) -> CheckReport:
    """Round trips both ways, output shapes, finiteness and untouched inputs.

    Arguments as in :func:`check_bijector`; raises :class:`BijectorCheckError` on failure.
    """
    return _single(INVERTIBILITY, bijector, x, z, dtype, timeout, tolerances)


def check_log_det(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None = None,
    dtype: torch.dtype | None = None,
    timeout: float | None = 60.0,
    **tolerances: float,
) -> CheckReport:
    """Forward and inverse log-dets against the brute-force Jacobian, and their sum.

    Arguments as in :func:`check_bijector`; raises :class:`BijectorCheckError` on failure.
    """
    return _single(LOG_DET, bijector, x, z, dtype, timeout, tolerances)


def check_batch_independence(
    bijector: object,
    x: Tensor,
    *,
    dtype: torch.dtype | None = None,
    timeout: float | None = 60.0,
    **tolerances: float,
) -> CheckReport:
    """Sub-batches and permuted batches give the same per-sample outputs and log-dets.

    Arguments as in :func:`check_bijector`; raises :class:`BijectorCheckError` on failure.
    """
    return _single(BATCH_INDEPENDENCE, bijector, x, None, dtype, timeout, tolerances)


def perturb_parameters(
    module: nn.Module, *, seed: int = 0, scale: float = 0.3, dtype: torch.dtype = torch.float64
) -> nn.Module:
    """``module`` cast to ``dtype`` with seeded Gaussian noise of std ``scale`` on every parameter.

    A fresh layer is often special (orthogonal, near the identity, with zero entries where a
    mask would zero them anyway) and hides mistakes (a flipped log-det sign, a transposed matrix,
    a missing term); noise makes every parameter generic. The package's tests, the book and the
    assignments' hidden tests all perturb with this function. ``module`` is changed in place and
    returned. The default ``dtype`` is float64, the precision of every check against a
    brute-force Jacobian; the book's timing cells perturb in float32.
    """
    if not dtype.is_floating_point:
        raise TypeError(f"perturb_parameters: dtype must be a floating type, got {dtype}")
    module = module.to(dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(scale * noise)
    return module
