"""Tests of nf_course.grading_checks.coupling, the hidden checks of assignment 04: the formulas
pass, and mistakes that only the broadened inputs expose (a mask assumed to alternate, a
detached log-det, an inverse without gradients) are rejected with a message naming them.

The end-to-end grading of whole submissions is ``tests/test_assignments.py``."""

from __future__ import annotations

import pytest
import torch

from nf_course.checks import BijectorCheckError
from nf_course.grading_checks import (
    GradingCheckError,
    check_coupling_forward,
    check_coupling_inverse,
)
from nf_course.grading_checks.coupling import Conditioner, formula_forward, formula_inverse


def every_other_forward(x, mask, conditioner):
    """Moves every other coordinate from the mask's first entry: right for alternating masks."""
    s, t = conditioner(mask * x)
    moved = slice(1 if mask[0] == 1 else 0, None, 2)
    z = x.clone()
    z[:, moved] = x[:, moved] * torch.exp(s[:, moved]) + t[:, moved]
    return z, s[:, moved].sum(dim=1)


def detached_forward(x, mask, conditioner):
    z, log_det = formula_forward(x, mask, conditioner)
    return z, log_det.detach()


def inverse_without_gradients(z, mask, conditioner):
    with torch.no_grad():
        return formula_inverse(z, mask, conditioner)


def test_the_formulas_pass() -> None:
    check_coupling_forward(formula_forward)
    check_coupling_inverse(formula_inverse)


def test_a_mask_assumed_to_alternate_is_found() -> None:
    alternating = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    conditioner = Conditioner(4, seed=0)
    for got, want in zip(
        every_other_forward(x, alternating, conditioner),
        formula_forward(x, alternating, conditioner),
        strict=True,
    ):
        torch.testing.assert_close(got, want)  # right where the visible tests look
    with pytest.raises(GradingCheckError, match=r"mask b = \[1, 1, 1, 0, 0, 0\]"):
        check_coupling_forward(every_other_forward)


def test_a_detached_log_det_is_found() -> None:
    with pytest.raises(BijectorCheckError, match="derivative of its log_det"):
        check_coupling_forward(detached_forward)


def test_an_inverse_without_gradients_is_found() -> None:
    with pytest.raises(BijectorCheckError, match="inverse"):
        check_coupling_inverse(inverse_without_gradients)


def test_an_exception_names_the_call() -> None:
    def crashing(x, mask, conditioner):
        return x[:, mask], None  # a float mask cannot index

    with pytest.raises(GradingCheckError, match=r"coupling_forward\(·, mask, conditioner\)"):
        check_coupling_forward(crashing)
