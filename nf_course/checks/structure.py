"""Properties of the values a bijector returns: it runs, keeps shapes and finiteness, inverts
both ways, treats samples independently, is deterministic and leaves its input alone.

Each function verifies one property of :data:`nf_course.checks.CHECKS` on a :class:`Run` and
records its result there; :mod:`nf_course.checks.registry` lists them in the order they run."""

from __future__ import annotations

import torch

from nf_course.checks import diagnosis
from nf_course.checks.run import Evaluation, Run, per_sample, seeded
from nf_course.checks.subject import CallFailed


def runs(run: Run) -> None:
    """``forward(x)`` and ``inverse(forward(x))`` run and keep the return contract."""
    z, forward_log_det = run.call("forward", run.x)
    run.first_calls.append(("forward", run.x, z, forward_log_det))
    x_back, inverse_log_det = run.call("inverse", z)
    run.first_calls.append(("inverse", z, x_back, inverse_log_det))
    run.evaluation = Evaluation(z, forward_log_det, x_back, inverse_log_det)
    run.ok("runs")


def numel(run: Run) -> None:
    """On the calls of :func:`runs` that returned (forward's shapes are checked even when
    inverse fails on them)."""
    if not run.first_calls:
        run.skip("numel", "forward did not run")
        return
    for method, given, output, _ in run.first_calls:
        if output[0].numel() != given[0].numel():
            run.fail(
                "numel",
                f"{method} maps samples of shape {tuple(given.shape[1:])} "
                f"({given[0].numel()} elements) to shape {tuple(output.shape[1:])} "
                f"({output[0].numel()} elements): a bijection must keep the number of elements",
            )
            return
    run.ok("numel")


def log_det_shape(run: Run) -> None:
    """On the calls of :func:`runs` that returned."""
    if not run.first_calls:
        run.skip("log_det_shape", "forward did not run")
        return
    for method, given, output, log_det in run.first_calls:
        batch = given.shape[0]
        if tuple(log_det.shape) == (batch,):
            continue
        cause = ""
        if tuple(log_det.shape) in (tuple(given.shape), tuple(output.shape)):
            cause = " (the shape of the data: did you forget to sum over the dimensions?)"
        elif log_det.numel() == 1:
            cause = (
                " (a single number: it looks summed or averaged over the batch; return one "
                "value per sample)"
            )
        elif log_det.numel() == batch:
            cause = f" (reshape it to ({batch},), e.g. with .reshape({batch}))"
        run.fail(
            "log_det_shape",
            f"{method} returned log_det of shape {tuple(log_det.shape)}; expected ({batch},), "
            f"one value per sample{cause}",
        )
        return
    run.ok("log_det_shape")


def finite(run: Run) -> None:
    e = run.evaluation
    assert e is not None
    values = {
        "forward output z": e.z,
        "forward log_det": e.ld_f,
        "inverse output x": e.x_back,
        "inverse log_det": e.ld_g,
    }
    for label, value in values.items():
        if value is None:
            continue
        bad = ~torch.isfinite(value)
        if bad.any():
            sample = int(bad.reshape(value.shape[0], -1).any(dim=1).nonzero()[0])
            kind = "NaN" if value.isnan().any() else "infinite"
            cause = diagnosis.finite_cause(label, kind)
            run.fail("finite", f"the {label} is {kind} at sample {sample}{cause}")
            return
    run.ok("finite")


def round_trip(run: Run) -> None:
    e = run.evaluation
    assert e is not None

    def cause() -> str:
        try:
            forward_of_z, _ = run.subject.call("forward", e.z)
        except CallFailed:
            forward_of_z = None
        return diagnosis.round_trip_cause(
            run.x, e.z, e.x_back, forward_of_z, run.tol["atol"], run.tol["rtol"]
        )

    run.compare("round_trip", e.x_back, run.x, "inverse(forward(x))", "x", cause=cause)


def round_trip_inverse(run: Run) -> None:
    for label, z_points in run.z_point_sets():
        x_back, _ = run.call("inverse", z_points)
        z_again, _ = run.call("forward", x_back)
        run.compare(
            "round_trip_inverse", z_again, z_points, f"forward(inverse(z)) for {label}", "z"
        )


def batch_independence(run: Run) -> None:
    e = run.evaluation
    assert e is not None
    half = run.batch // 2
    variants = {
        "the second half of the batch": torch.arange(half, run.batch),
        "the batch in permuted order": torch.randperm(run.batch, generator=seeded(0)),
        "the first sample alone": torch.arange(1),
    }
    references = (
        ("forward", run.x, e.z, e.ld_f),
        ("inverse", e.z, e.x_back, e.ld_g),
    )
    for method, given, reference, reference_ld in references:
        for label, index in variants.items():
            try:  # a failure here is the batch's doing: the method ran on the full batch
                out, log_det = run.subject.call(method, given[index])
            except CallFailed as failure:
                cause = diagnosis.sub_batch_failure_cause(str(failure), len(index))
                run.fail("batch_independence", f"on {label}: {failure}{cause}")
                return
            matches = run.compare(
                "batch_independence",
                out,
                reference[index],
                f"{method} on {label}",
                "the same samples within the full batch",
                cause=diagnosis.BATCH_STATISTICS,
            )
            log_det = per_sample(log_det, len(index))
            if matches and reference_ld is not None and log_det is not None:
                matches = run.compare(
                    "batch_independence",
                    log_det,
                    reference_ld[index],
                    f"{method} log_det on {label}",
                    "log_det within the full batch",
                    cause=diagnosis.BATCH_STATISTICS,
                    log_det=True,
                )
            if not matches:
                return


def determinism(run: Run) -> None:
    e = run.evaluation
    assert e is not None
    for method, value in (("forward", run.x), ("inverse", e.z)):
        first, first_ld = run.call(method, value)
        second, second_ld = run.call(method, value)
        if not run.compare(
            "determinism",
            second,
            first,
            f"a second {method} call",
            "the first",
            cause=diagnosis.RANDOMNESS,
        ):
            return
        first_ld, second_ld = per_sample(first_ld, run.batch), per_sample(second_ld, run.batch)
        if first_ld is not None and second_ld is not None:
            if not run.compare(
                "determinism",
                second_ld,
                first_ld,
                f"a second {method} log_det",
                "the first",
                cause=diagnosis.RANDOMNESS,
                log_det=True,
            ):
                return


def input_unchanged(run: Run) -> None:
    """Neither method modified its input in any call of the run (so it is verified last)."""
    mutations = run.subject.mutations
    if not mutations:
        run.ok("input_unchanged")
        return
    methods = " and ".join(sorted(mutations))
    run.fail(
        "input_unchanged",
        f"{methods} modified its input tensor in place (by up to {max(mutations.values()):.3g})\n"
        "  likely cause: an in-place operation on the input (x *= s, x += t, x[:, i] = …, "
        ".add_(), .mul_()); compute a new tensor instead (y = x * s)",
    )
