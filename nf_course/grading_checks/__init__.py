"""The checks that the graded assignments' hidden tests call, one module per assignment.

A hidden test is a one-line call into this package, so that the feedback a student gets shows
what failed (the message of :class:`GradingCheckError` or of
:class:`~nf_course.checks.BijectorCheckError`) and never the test's logic. Each check builds its
own seeded, float64 inputs, compares the student's code with a closed form or with the package's
reference, and raises with a message that names the property, the worst input, the value found
and the value expected.

====================================  ===========================================================
module                                assignment (``solutions/``), book chapter
====================================  ===========================================================
:mod:`.change_of_variables`           ``01_change_of_variables``, chapter 2
:mod:`.linear_flows`                  ``02_linear_flows``, chapter 4
:mod:`.planar`                        ``03_planar``, chapter 5
:mod:`.coupling`                      ``04_coupling``, chapter 8
:mod:`.autoregressive`                ``05_autoregressive``, chapter 7
:mod:`.glow`                          ``06_glow``, chapter 9
:mod:`.residual`                      ``07_residual``, chapter 6
:mod:`.continuous`                    ``08_continuous``, chapters 10 and 11
====================================  ===========================================================

The end-to-end grading tests are ``tests/test_assignments.py`` with the wrong submissions of
``tests/mistakes/``.
"""

from nf_course.checks import perturb_parameters
from nf_course.grading_checks.change_of_variables import (
    check_affine_bijector,
    check_affine_log_density,
    check_exp_normal_log_density,
    check_linear_log_density,
)
from nf_course.grading_checks.common import GradingCheckError, check_close
from nf_course.grading_checks.coupling import check_coupling_forward, check_coupling_inverse
from nf_course.grading_checks.linear_flows import (
    check_lu_linear,
    check_permutation,
    check_permutation_rejects_bad_input,
)
from nf_course.grading_checks.planar import check_planar, check_planar_adversarial

__all__ = [
    "GradingCheckError",
    "check_affine_bijector",
    "check_affine_log_density",
    "check_close",
    "check_coupling_forward",
    "check_coupling_inverse",
    "check_exp_normal_log_density",
    "check_linear_log_density",
    "check_lu_linear",
    "check_permutation",
    "check_permutation_rejects_bad_input",
    "check_planar",
    "check_planar_adversarial",
    "perturb_parameters",
]
