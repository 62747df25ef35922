"""What every assignment's checks share: :class:`GradingCheckError`, :func:`check_close` (the
comparison of :mod:`nf_course.checks.compare`, with a grader's message), the guarded call of
student code (:func:`call_student`) and seeded inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from nf_course.checks.compare import compare


class GradingCheckError(AssertionError):
    """A graded property does not hold; the message says which, where and by how much."""


def call_student(what: str, function: Callable[..., object], *args: object) -> object:
    """``function(*args)``: an exception raised by the student's code becomes a
    :class:`GradingCheckError` that names the call (``what``); a grader's own failure passes."""
    try:
        return function(*args)
    except GradingCheckError:
        raise
    except Exception as error:
        raise GradingCheckError(f"{what} raised {type(error).__name__}: {error}") from error


def randn(*shape: int, seed: int) -> Tensor:
    """Standard normal float64 values of ``shape`` from their own generator seeded ``seed``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_close(
    got: object,
    expected: Tensor,
    *,
    what: str,
    inputs: Tensor | None = None,
    atol: float = 1e-8,
    rtol: float = 1e-6,
) -> None:
    """Assert that ``got`` equals ``expected`` elementwise (``±inf`` must match exactly).

    Args:
        got: the student's value, expected to be a tensor of ``expected``'s shape.
        expected: the reference values.
        what: the quantity in words, e.g. ``"log p_X(x)"``.
        inputs: the inputs the values belong to, one per leading index (shown for the worst).
        atol, rtol: the tolerance ``atol + rtol·|expected|``.

    Raises:
        GradingCheckError: wrong type or shape, NaN, or a value out of tolerance.
    """
    if not isinstance(got, Tensor):
        raise GradingCheckError(f"{what} must be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise GradingCheckError(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        )
    result = compare(got, expected, atol, rtol)
    if result.passed:
        return
    where = ""
    if inputs is not None:
        point = inputs[result.sample]
        shown = f"{point.item():.6g}" if point.numel() == 1 else str(point.tolist())
        where = f" at input {shown}"
    hint = (
        " (NaN: a log or a division applied outside its domain?)" if math.isnan(result.got) else ""
    )
    raise GradingCheckError(
        f"{what} is wrong{where}: got {result.got:.8g}, expected {result.want:.8g}{hint} "
        f"({result.failing_values} of {expected.numel()} values are off)"
    )
