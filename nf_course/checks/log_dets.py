"""Log-determinant properties: each direction's log-det against the brute-force Jacobian, and
the two directions cancelling. The Jacobian of a direction whose autograd derivatives disagree
with finite differences (see :mod:`nf_course.checks.derivatives`) is never used."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nf_course.checks import diagnosis
from nf_course.checks.jacobian import brute_force_log_det
from nf_course.checks.run import Run, per_sample


def _log_det_of(run: Run, method: str, points: Tensor) -> Tensor | None:
    """``log|det|`` of ``method``'s autograd Jacobian at ``points``, or ``None`` where autograd
    cannot be trusted (not differentiable, or derivatives that disagree with finite
    differences)."""
    if method in run.untrusted_autograd:
        return None
    try:
        return brute_force_log_det(lambda t: run.call(method, t, grad=True), points)
    except ValueError:
        run.untrusted_autograd.setdefault(method, "its output is not differentiable")
        return None


def _compare_log_det(
    run: Run,
    check: str,
    returned: Tensor,
    expected: Tensor,
    got_label: str,
    want_label: str,
    sample_shape: Sequence[int],
) -> None:
    singular = ~torch.isfinite(expected)
    if singular.any():
        sample = int(singular.nonzero()[0])
        run.fail(
            check,
            f"the Jacobian is singular at sample {sample} (log|det| = −inf): "
            "the map is not invertible there",
        )
        return
    run.compare(
        check,
        returned,
        expected,
        got_label,
        want_label,
        cause=lambda: diagnosis.log_det_cause(
            returned, expected, sample_shape, run.tol["log_det_atol"]
        ),
        log_det=True,
    )


def log_det_forward(run: Run) -> None:
    e = run.evaluation
    assert e is not None and e.ld_f is not None
    expected = _log_det_of(run, "forward", run.x)
    if expected is None:
        run.fail(
            "log_det_forward",
            f"cannot check it: forward's autograd Jacobian is unusable "
            f"({run.untrusted_autograd['forward']})",
        )
        return
    _compare_log_det(
        run,
        "log_det_forward",
        e.ld_f,
        expected,
        "forward log_det",
        "log|det ∂f/∂x|",
        tuple(run.x.shape[1:]),
    )


def log_det_inverse(run: Run) -> None:
    """At points in the image of forward (and at the given z); by the inverse function theorem
    where inverse's own derivatives are not usable."""
    for label, z_points in run.z_point_sets():
        x_points, returned = run.call("inverse", z_points)
        returned = per_sample(returned, z_points.shape[0])
        if returned is None:
            return
        expected, how = _log_det_of(run, "inverse", z_points), ""
        if expected is None:
            via_forward = _log_det_of(run, "forward", x_points)
            if via_forward is None:
                run.skip("log_det_inverse", "neither direction has usable autograd derivatives")
                return
            expected = -via_forward
            how = (
                f" (= −log|det ∂f/∂x| at x = g(z): inverse's autograd derivatives are not used, "
                f"{run.untrusted_autograd['inverse']})"
            )
        _compare_log_det(
            run,
            "log_det_inverse",
            returned,
            expected,
            f"inverse log_det at {label}",
            f"log|det ∂g/∂z|{how}",
            tuple(z_points.shape[1:]),
        )


def log_det_sum(run: Run) -> None:
    """``forward`` then ``inverse`` at x and at midpoints, ``inverse`` then ``forward`` at the
    given z: the log-dets cancel."""
    midpoints = 0.5 * (run.x + run.x.roll(1, dims=0))
    pairs = [("x", "forward", run.x), ("midpoints between samples of x", "forward", midpoints)]
    if run.z_given is not None:
        pairs.append(("the given z", "inverse", run.z_given))
    for label, first, points in pairs:
        second = "inverse" if first == "forward" else "forward"
        image, first_ld = run.call(first, points)
        _, second_ld = run.call(second, image)
        first_ld = per_sample(first_ld, points.shape[0])
        second_ld = per_sample(second_ld, points.shape[0])
        if first_ld is None or second_ld is None:
            return
        forward_ld, inverse_ld = (
            (first_ld, second_ld) if first == "forward" else (second_ld, first_ld)
        )
        run.compare(
            "log_det_sum",
            forward_ld + inverse_ld,
            torch.zeros_like(forward_ld),
            f"forward log_det + inverse log_det at {label}",
            "0",
            cause=diagnosis.sum_cause(forward_ld, inverse_ld, run.tol["log_det_atol"]),
            log_det=True,
        )
