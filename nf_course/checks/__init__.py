"""The bijector checker: the properties every flow layer must have, verified numerically.

The package's own tests and every autograder of the course call it; the book's chapter "Change of
variables" introduces it. :func:`check_bijector` verifies every property of :data:`CHECKS` on a
batch ``x`` (and optionally on noise points ``z``): the calls and their return contract, shapes,
finiteness, round trips both ways, each direction's log-det against the brute-force autograd
Jacobian (whose derivatives are themselves checked against finite differences), the log-dets
cancelling, independence from the rest of the batch, determinism, gradients reaching every
parameter and agreeing with finite differences, a stale-cache test after a parameter update,
and inputs left untouched.

Layout: :mod:`~nf_course.checks.registry` holds the table of properties and
:mod:`~nf_course.checks.runner` runs it; each property is a function in
:mod:`~nf_course.checks.structure`, :mod:`~nf_course.checks.log_dets`,
:mod:`~nf_course.checks.derivatives` or :mod:`~nf_course.checks.parameters`; student code is only
ever called through :class:`~nf_course.checks.subject.Subject` (time limits, exceptions, the
return contract); likely causes are pure functions in :mod:`~nf_course.checks.diagnosis`; the
comparison shared with :mod:`nf_course.grading_checks` is :mod:`~nf_course.checks.compare`.
Tests: ``tests/test_checks.py`` proves the checker on ``tests/checker_catalogue.py``.

Design notes:

* Any object with ``forward``/``inverse`` is accepted. It is copied (tensors that refuse
  ``copy.deepcopy`` are copied detached), so that the caller's module is never modified; an
  object that cannot be copied at all is checked as it is and its state restored afterwards.
* Checks run in float64 when the module allows it, and fall back to float32 (with looser
  tolerances) when it raises or returns float32 in float64.
* An exception raised by the checked code, or by autograd on its graph, becomes a failure of
  the property being checked, naming the method and, where established, the likely cause.
"""

from nf_course.checks.api import (
    check_batch_independence,
    check_bijector,
    check_invertible,
    check_log_det,
    perturb_parameters,
)
from nf_course.checks.jacobian import brute_force_jacobian, brute_force_log_det
from nf_course.checks.registry import CHECKS
from nf_course.checks.report import BijectorCheckError, CheckReport, CheckResult

__all__ = [
    "CHECKS",
    "BijectorCheckError",
    "CheckReport",
    "CheckResult",
    "brute_force_jacobian",
    "brute_force_log_det",
    "check_batch_independence",
    "check_bijector",
    "check_invertible",
    "check_log_det",
    "perturb_parameters",
]
