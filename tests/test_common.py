"""The package's shared validators: one wording for every wrong argument, named where it came."""

from __future__ import annotations

import math

import pytest

from nf_course.bijectors import ElementwiseAffine
from nf_course.common import (
    boolean,
    choice,
    in_interval,
    positive_float,
    positive_int,
    zero_or_one,
)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: positive_int(0, "dim", "F"), ValueError, "F: dim must be at least 1, got 0"),
        (lambda: positive_int(2.0, "dim", "F"), TypeError, "F: dim must be an int, got float"),
        (lambda: positive_float(0, "tol", "F"), ValueError, "F: tol must be a positive number"),
        (lambda: positive_float(math.inf, "tol", "F"), ValueError, "positive number, got inf"),
        (lambda: positive_float("1", "tol", "F"), TypeError, "F: tol must be a number, got str"),
        (lambda: in_interval(1.0, "p", "F", 0, 1), ValueError, r"p must be a number in \(0, 1\)"),
        (
            lambda: in_interval(0.5, "a", "F", 0, 0.5, closed_low=True),
            ValueError,
            r"a must be a number in \[0, 0.5\), got 0.5",
        ),
        (lambda: choice("x", ("a", "b"), "mode", "F"), ValueError, "unknown mode 'x'; choose one"),
        (lambda: choice(1, ("a", "b"), "mode", "F"), TypeError, "mode must be a string, got int"),
        (lambda: zero_or_one(True, "parity", "F"), ValueError, "parity must be 0 or 1, got True"),
        (lambda: boolean(1, "adjoint", "F"), TypeError, "F: adjoint must be a bool, got int"),
        (lambda: ElementwiseAffine(0), ValueError, "ElementwiseAffine: dim must be at least 1"),
    ],
)
def test_a_wrong_argument_gets_one_clear_error(call, error: type[Exception], message: str):
    with pytest.raises(error, match=message):
        call()


def test_valid_arguments_come_back_as_they_are():
    assert positive_int(3, "n", "F") == 3
    assert positive_float(2, "tol", "F") == 2.0
    assert in_interval(0, "a", "F", 0, 0.5, closed_low=True) == 0.0
    assert choice("b", ("a", "b"), "mode", "F") == "b"
    assert zero_or_one(1, "parity", "F") == 1
    assert boolean(False, "adjoint", "F") is False
