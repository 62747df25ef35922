"""One tolerance comparison, ``|got − want| ≤ atol + rtol·|want|`` elementwise, and where it fails
worst: shared by every check and by :func:`nf_course.grading_checks.check_close`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`.

    Attributes:
        passed: every element is within its tolerance.
        sample: index along the first dimension of the worst element.
        element: flat index of the worst element within its sample (0 for 1D tensors).
        got, want: the two values at the worst element.
        error: ``|got − want|`` there (``inf`` for a NaN against a number).
        tolerance: ``atol + rtol·|want|`` there.
        largest_error: the largest error over all elements (NaN counts as ``inf``).
        failing_samples: how many samples have at least one element out of tolerance.
        failing_values: how many elements are out of tolerance.
    """

    passed: bool
    sample: int
    element: int
    got: float
    want: float
    error: float
    tolerance: float
    largest_error: float
    failing_samples: int
    failing_values: int


def compare(got: Tensor, want: Tensor, atol: float, rtol: float) -> Comparison:
    """Compare two tensors of the same shape elementwise; the first dimension indexes samples.

    Equal infinities and NaN against NaN count as equal; a NaN against a number is an error of
    ``inf``. ``got`` is cast to ``want``'s dtype.
    """
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {tuple(got.shape)} and {tuple(want.shape)}")
    if got.numel() == 0:
        return Comparison(True, 0, 0, math.nan, math.nan, 0.0, atol, 0.0, 0, 0)
    rows = got.shape[0] if got.dim() else 1
    got = got.detach().to(want.dtype).reshape(rows, -1)
    want = want.detach().reshape(rows, -1)
    same = (got == want) | (got.isnan() & want.isnan())
    error = torch.where(same, torch.zeros_like(got), (got - want).abs()).nan_to_num(math.inf)
    tolerance = atol + rtol * want.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0)
    excess = error - tolerance
    worst_per_sample = excess.amax(dim=1)
    sample = int(worst_per_sample.argmax())
    element = int(excess[sample].argmax())
    return Comparison(
        passed=bool((excess <= 0).all()),
        sample=sample,
        element=element,
        got=float(got[sample, element]),
        want=float(want[sample, element]),
        error=float(error[sample, element]),
        tolerance=float(tolerance[sample, element]),
        largest_error=float(error.max()),
        failing_samples=int((worst_per_sample > 0).sum()),
        failing_values=int((excess > 0).sum()),
    )
