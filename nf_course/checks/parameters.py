"""Properties of training: every parameter receives a finite gradient, and after an update of
the parameters (an optimizer step) the map still inverts with the right log-det.

The update is made in place on the checked module and undone afterwards, so modules that cannot
be copied (cached non-leaf tensors, weight norm, third-party transforms) are checked too."""

from __future__ import annotations

import torch

from nf_course.checks import diagnosis
from nf_course.checks.jacobian import brute_force_log_det
from nf_course.checks.run import Run, seeded
from nf_course.checks.subject import CallFailed, TimeLimitExceeded, time_limit

_UPDATE_SIZE = 0.05  # relative to each parameter's mean magnitude (plus 0.1)


def gradients(run: Run) -> None:
    parameters = run.parameters
    if not parameters:
        run.skip("gradients", "the bijector has no trainable parameters")
        return
    for _, parameter in parameters:
        parameter.grad = None
    generator = seeded(1)
    z, ld_f = run.call("forward", run.x, grad=True)
    x_back, ld_g = run.call("inverse", z.detach(), grad=True)
    loss = ld_f.sum() + ld_g.sum()
    for output in (z, x_back):
        weights = torch.randn(output.shape, generator=generator, dtype=output.dtype)
        loss = loss + (output * weights.to(output.device)).sum()
    try:
        with time_limit(run.subject.timeout):
            loss.backward()
    except TimeLimitExceeded:
        run.fail("gradients", f"the backward pass did not finish in {run.subject.timeout:g} s")
        return
    except Exception as exc:
        run.fail(
            "gradients",
            f"backward through forward and inverse raised {type(exc).__name__}: "
            f"{diagnosis.short(str(exc))}"
            + diagnosis.autograd_failure_cause(str(exc), run.subject.mutations),
        )
        return
    missing = [name for name, p in parameters if p.grad is None]
    bad = [
        name for name, p in parameters if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    for _, parameter in parameters:
        parameter.grad = None
    if missing:
        run.fail(
            "gradients",
            f"no gradient reaches {', '.join(missing)}\n  likely cause: the parameter is "
            "unused, or cut from the graph (.detach(), .data, .item(), NumPy, torch.no_grad, "
            "a copy made in __init__)",
        )
    elif bad:
        run.fail("gradients", f"the gradient of {', '.join(bad)} is not finite")
    else:
        run.ok("gradients", f"{len(parameters)} parameter tensors receive finite gradients")


def parameter_update(run: Run) -> None:
    parameters = [p for _, p in run.parameters]
    if not parameters:
        run.skip("parameter_update", "the bijector has no trainable parameters")
        return
    if run.failed("round_trip") or run.failed("log_det_forward"):
        run.skip("parameter_update", "the map is already wrong before the update")
        return
    e = run.evaluation
    assert e is not None
    generator = seeded(2)
    steps = [
        _UPDATE_SIZE
        * (p.detach().abs().mean() + 0.1)
        * torch.randn(p.shape, generator=generator, dtype=p.dtype)
        for p in parameters
    ]
    subject = run.subject
    try:
        with subject.shifted(steps, 1.0):
            z, ld_f = subject.call("forward", run.x)
            x_back, _ = subject.call("inverse", z)
            expected = brute_force_log_det(lambda t: subject.call("forward", t, grad=True), run.x)
    except (CallFailed, ValueError) as exc:
        run.fail("parameter_update", f"after a parameter update: {exc}")
        return
    if torch.equal(z, e.z):
        run.fail(
            "parameter_update",
            "forward returns exactly the same z after the parameters changed"
            + diagnosis.STALE_CACHE,
        )
        return
    invertible = run.compare(
        "parameter_update",
        x_back,
        run.x,
        "inverse(forward(x)) after the update",
        "x",
        cause=diagnosis.STALE_CACHE,
    )
    if invertible and ld_f.numel() == expected.numel():
        run.compare(
            "parameter_update",
            ld_f.reshape(-1),
            expected,
            "forward log_det after the update",
            "log|det ∂f/∂x|",
            cause=diagnosis.STALE_CACHE,
            log_det=True,
        )
