r"""The bijector checker: the properties every flow layer must have, verified numerically.

The package's own tests and every autograder of the course call this module. A bijector
(lecture 000, "Jacobian structure"; chapter 004, §2.1) is an invertible map :math:`f` with a
tractable :math:`\log|\det \partial f/\partial x|`. :func:`check_bijector` verifies, on a batch
``x`` (and optionally on noise points ``z``):

=====================  ===================================================================
check                  what is verified
=====================  ===================================================================
``runs``               ``forward`` and ``inverse`` run and return ``(tensor, log_det)``
``log_det_shape``      ``log_det`` has shape ``(B,)``: one value per sample
``numel``              the output keeps the batch size and the number of elements per sample
``finite``             outputs and log-dets are finite
``input_unchanged``    neither method modifies its input tensor in place
``round_trip``         ``g(f(x)) = x`` on the batch
``round_trip_inverse`` ``f(g(z)) = z`` on points in the image of ``f`` (and on ``z`` if given)
``log_det_forward``    the returned log-det equals ``log|det ∂f/∂x|`` of the autograd Jacobian
``log_det_inverse``    the same for ``g`` (by the inverse function theorem if ``g`` is not
                       differentiable, e.g. a root finder run without gradients)
``log_det_sum``        ``log|det ∂f/∂x|(x) + log|det ∂g/∂z|(f(x)) = 0`` at several point sets
``batch_independence`` sub-batches and permuted batches give the same per-sample results
``determinism``        two calls on the same input agree
``gradients``          every parameter receives a finite gradient
``parameter_update``   after a small change of the parameters (an optimizer step) the map is
                       still inverted exactly and its log-det is still right (no stale cache)
=====================  ===================================================================

Design notes.

* Any object with ``forward``/``inverse`` is accepted; it is deep-copied so that the caller's
  module is never modified (no dtype change, no ActNorm initialisation on the check's data).
* Checks run in float64 when the module allows it, and fall back to float32 (with looser
  tolerances) when it raises or returns float32 in float64; correct code is never rejected
  for working in float32 only.
* Exceptions raised by the checked code become :class:`BijectorCheckError` failures naming the
  method; a call that does not return within ``timeout`` seconds is stopped (main thread only).
* The brute-force Jacobian takes one backward pass per output coordinate on the whole batch,
  which gives each sample's own Jacobian when samples are treated independently; the
  ``batch_independence`` check verifies exactly that assumption.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

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

#: Every check, with the words a student reads.
CHECKS: dict[str, str] = {
    "runs": "forward and inverse run and return (output, log_det)",
    "log_det_shape": "log_det has shape (B,)",
    "numel": "output keeps the batch size and the number of elements per sample",
    "finite": "outputs and log-dets are finite",
    "input_unchanged": "the input tensor is not modified",
    "round_trip": "inverse(forward(x)) returns x",
    "round_trip_inverse": "forward(inverse(z)) returns z",
    "log_det_forward": "forward log_det equals log|det ∂f/∂x| of the Jacobian",
    "log_det_inverse": "inverse log_det equals log|det ∂g/∂z| of the Jacobian",
    "log_det_sum": "forward and inverse log_dets sum to zero",
    "batch_independence": "each sample's result does not depend on the rest of the batch",
    "determinism": "two calls on the same input agree",
    "gradients": "every parameter receives a finite gradient",
    "parameter_update": "still invertible with the right log_det after a parameter update",
}

_INVERTIBILITY = ("runs", "numel", "finite", "input_unchanged", "round_trip", "round_trip_inverse")
_LOG_DET = ("runs", "log_det_shape", "finite", "log_det_forward", "log_det_inverse", "log_det_sum")

# Default tolerances: |returned − expected| ≤ atol + rtol·|expected|.
_TOLERANCES = {
    torch.float64: {"atol": 1e-6, "rtol": 1e-5, "log_det_atol": 1e-6, "log_det_rtol": 1e-5},
    torch.float32: {"atol": 1e-4, "rtol": 1e-3, "log_det_atol": 1e-3, "log_det_rtol": 1e-3},
}


# ----------------------------------------------------------------------------- results


@dataclass
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: the check's key in :data:`CHECKS` (e.g. ``"log_det_forward"``).
        passed: whether the property holds (``True`` also for a check that was skipped).
        message: what was measured, and for a failure, where, by how much and the likely cause.
        error: the largest measured error, where the check measures one.
        tolerance: the tolerance it was compared with.
        skipped: why the check did not run, or ``None``.
    """

    check: str
    passed: bool
    message: str = ""
    error: float | None = None
    tolerance: float | None = None
    skipped: str | None = None

    def __str__(self) -> str:
        mark = "-" if self.skipped else ("✓" if self.passed else "✗")
        head = f"{mark} [{self.check}] {CHECKS[self.check]}"
        body = f"not run: {self.skipped}" if self.skipped else self.message
        return head + ("\n    " + body.replace("\n", "\n    ") if body else "")


@dataclass
class CheckReport:
    """Everything :func:`check_bijector` measured.

    Attributes:
        name: the checked object's class name.
        dtype: the dtype the checks ran in.
        results: one :class:`CheckResult` per check.
        notes: remarks on how the checks ran (e.g. why float32 was used).
    """

    name: str
    dtype: torch.dtype
    results: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [result for result in self.results if not result.passed]

    @property
    def failed_checks(self) -> list[str]:
        """The keys of the failed checks."""
        return [result.check for result in self.failures]

    def __getitem__(self, check: str) -> CheckResult:
        for result in self.results:
            if result.check == check:
                return result
        raise KeyError(f"no result for check {check!r}; ran {[r.check for r in self.results]}")

    def __str__(self) -> str:
        ran = [result for result in self.results if not result.skipped]
        status = "passed all" if self.passed else f"failed {len(self.failures)} of {len(ran)}"
        lines = [f"{self.name} {status} checks (in {str(self.dtype).removeprefix('torch.')})"]
        lines += [f"  note: {note}" for note in self.notes]
        ordered = self.failures + [result for result in self.results if result.passed]
        lines += [str(result) for result in ordered]
        return "\n".join(lines)


class BijectorCheckError(AssertionError):
    """A bijector failed one or more checks.

    The message lists every failed property with the worst sample, the measured error, the
    tolerance and the likely cause. ``report`` holds the full :class:`CheckReport`.
    """

    def __init__(self, report: CheckReport) -> None:
        ran = [result for result in report.results if not result.skipped]
        lines = [
            f"{report.name} failed {len(report.failures)} of {len(ran)} checks "
            f"(in {str(report.dtype).removeprefix('torch.')}):"
        ]
        lines += [f"  note: {note}" for note in report.notes]
        lines += [str(result) for result in report.failures]
        passed = [result.check for result in ran if result.passed]
        if passed:
            lines.append("passed: " + ", ".join(passed))
        super().__init__("\n".join(lines))
        self.report = report

    @property
    def failed_checks(self) -> list[str]:
        """The keys of the failed checks, e.g. ``["round_trip", "log_det_sum"]``."""
        return self.report.failed_checks


# ----------------------------------------------------------------------------- Jacobians


def brute_force_jacobian(fn: Callable[[Tensor], object], x: Tensor) -> Tensor:
    """Per-sample Jacobians of ``fn`` by reverse-mode autograd: ``(B, …) -> (B, n_out, n_in)``.

    ``fn`` maps a batch to ``out`` or to a tuple ``(out, …)``. One backward pass per output
    coordinate ``j`` differentiates ``Σ_b out[b, j]``; for a map that treats samples
    independently its gradient at ``x[b]`` is row ``j`` of sample ``b``'s Jacobian.

    Raises:
        ValueError: the output is not differentiable with respect to ``x``.
    """
    batch = x.shape[0]
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        out = out[0] if isinstance(out, tuple | list) else out
        flat = out.reshape(batch, -1)
        if not flat.requires_grad:
            raise ValueError(
                "the output does not depend differentiably on the input (computed under "
                "torch.no_grad, with .detach(), .item() or NumPy?)"
            )
        rows = []
        for j in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(x) if grad is None else grad)
    return torch.stack([row.reshape(batch, -1) for row in rows], dim=1)


def brute_force_log_det(fn: Callable[[Tensor], object], x: Tensor) -> Tensor:
    """``log|det J|`` per sample from the full autograd Jacobian of ``fn``: ``(B, …) -> (B,)``.

    ``fn`` returns ``out`` or ``(out, …)`` with as many elements per sample as ``x``. The
    determinant is taken in float64; a singular Jacobian gives ``-inf``. Costs one backward
    pass per dimension and ``O(D³)`` per sample: meant for checking, not for training.
    """
    jacobian = brute_force_jacobian(fn, x)
    if jacobian.shape[1] != jacobian.shape[2]:
        raise ValueError(
            f"the map changes the number of elements per sample ({jacobian.shape[2]} -> "
            f"{jacobian.shape[1]}): its Jacobian is not square and has no determinant"
        )
    return torch.linalg.slogdet(jacobian.double()).logabsdet.to(x.dtype)


# ----------------------------------------------------------------------------- calling


class _CallFailed(Exception):
    """The checked code raised, hung, or broke the (output, log_det) contract."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__(message)
        self.method = method


class _Timeout(BaseException):
    """Raised by the alarm inside a call that runs too long (a BaseException, so that a
    student's ``except Exception`` does not swallow it)."""


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (Unix main thread only; elsewhere no limit).

    An enclosing alarm (pytest-timeout, nbgrader) is restored with its remaining time.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise _Timeout

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            remaining = max(previous_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


def _where(exc: BaseException) -> str:
    """The innermost frame of the traceback that is not inside torch or this module."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "/torch/" not in frame.filename and not frame.filename.endswith("checks.py")
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}: {frame.line})"


def _fmt(values: Tensor, limit: int = 6) -> str:
    """A short readable rendering of a 1D tensor."""
    flat = values.detach().reshape(-1).tolist()
    shown = ", ".join(f"{v:.4g}" for v in flat[:limit])
    return f"[{shown}{', …' if len(flat) > limit else ''}]"


class _Subject:
    """The module under test, called safely: copies inputs, watches for in-place edits,
    time limits, exceptions and the return contract."""

    def __init__(self, module: object, name: str, timeout: float | None) -> None:
        self.module = module
        self.name = name
        self.timeout = timeout
        self.mutations: dict[str, float] = {}

    def call(self, method: str, value: Tensor, *, grad: bool = False) -> tuple[Tensor, Tensor]:
        """Run ``module.<method>(value)`` and return ``(output, log_det)``."""
        function = getattr(self.module, method, None)
        if not callable(function):
            raise _CallFailed(method, f"{self.name} has no method {method}(…)")
        # With grad, the input stays attached to the caller's graph (a non-leaf copy, so that
        # an in-place edit is seen below rather than refused by autograd).
        argument = value.clone() if grad else value.detach().clone()
        snapshot = argument.detach().clone()
        try:
            # Gradients stay enabled: some maps need autograd inside forward (exact CNF traces).
            with _time_limit(self.timeout), torch.enable_grad():
                result = function(argument)
        except _Timeout:
            raise _CallFailed(
                method,
                f"{self.name}.{method} did not return within {self.timeout:g} s "
                "(an infinite loop, or a loop that never converges?)",
            ) from None
        except Exception as exc:
            raise _CallFailed(
                method,
                f"{self.name}.{method} raised {type(exc).__name__}: {exc}{_where(exc)}",
            ) from exc
        changed = (argument.detach() - snapshot).abs()
        if argument.shape != snapshot.shape or not torch.equal(argument.detach(), snapshot):
            self.mutations[method] = (
                math.inf if argument.shape != snapshot.shape else changed.max().item()
            )
        output, log_det = self._unpack(method, result, value.shape[0])
        return (output, log_det) if grad else (output.detach(), log_det.detach())

    def _unpack(self, method: str, result: object, batch: int) -> tuple[Tensor, Tensor]:
        expected = "(x, log_det)" if method == "inverse" else "(z, log_det)"
        if isinstance(result, Tensor) or not isinstance(result, tuple | list) or len(result) != 2:
            kind = type(result).__name__
            if isinstance(result, tuple | list):
                kind += f" of length {len(result)}"
            raise _CallFailed(
                method,
                f"{self.name}.{method} must return a pair {expected}, got a {kind}",
            )
        output, log_det = result
        for label, item in (("output", output), ("log_det", log_det)):
            if not isinstance(item, Tensor):
                raise _CallFailed(
                    method,
                    f"{self.name}.{method}: the {label} must be a torch.Tensor, got "
                    f"{type(item).__name__} (keep it a tensor: no .item(), float() or NumPy)",
                )
        if not output.is_floating_point():
            raise _CallFailed(method, f"{self.name}.{method} returned an output of {output.dtype}")
        if output.dim() == 0 or output.shape[0] != batch:
            raise _CallFailed(
                method,
                f"{self.name}.{method} returned an output of shape {tuple(output.shape)}; "
                f"the batch has {batch} samples, so its first dimension must be {batch}",
            )
        return output, log_det


# ----------------------------------------------------------------------------- diagnosis


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


def _log_det_cause(
    returned: Tensor, expected: Tensor, sample_shape: Sequence[int], tol: float
) -> str:
    """A likely cause for a log-det that disagrees with the brute-force value."""
    loose = max(tol, 1e-3)
    signal_size = expected.abs().max().item()
    hints = []
    if signal_size > loose and _close(returned, -expected, loose, 1e-3):
        hints.append(
            "the sign is flipped: the value is the log-det of the other direction "
            "(forward needs log|det ∂f/∂x|, inverse log|det ∂g/∂z| = −log|det ∂f/∂x|)"
        )
    elif signal_size > loose and returned.abs().max().item() <= loose:
        hints.append("log_det is zero where the Jacobian's is not: the log-det term is missing")
    elif len(sample_shape) == 3 and sample_shape[1] * sample_shape[2] > 1 and signal_size > loose:
        pixels = sample_shape[1] * sample_shape[2]
        if _close(returned * pixels, expected, loose, 1e-3):
            hints.append(
                f"the factor H·W = {pixels} is missing: a per-channel transformation applied at "
                "every pixel contributes its log-det once per pixel"
            )
        elif _close(returned, expected * pixels, loose, 1e-3):
            hints.append(f"H·W = {pixels} is counted once too often")
    if not hints and returned.numel() > 1:
        total = expected.sum()
        if _close(returned, total.expand_as(returned), loose, 1e-3) and not _close(
            expected, total.expand_as(expected), loose, 1e-3
        ):
            hints.append("every sample gets the log-det summed over the whole batch")
        elif (expected.abs() > loose).all():
            ratio = returned / expected
            if (ratio - ratio.mean()).abs().max().item() < 1e-3 * max(1.0, ratio.abs().mean()):
                hints.append(
                    f"it is {ratio.mean().item():.4g} times the true value at every sample "
                    "(a scale, e.g. log s² = 2·log|s|, or a sum over the wrong dimensions)"
                )
        if not hints:
            offset = returned - expected
            if (offset - offset.mean()).abs().max().item() <= loose:
                hints.append(
                    f"it is off by the same constant {offset.mean().item():.4g} at every "
                    "sample: a term that does not depend on the input is wrong or missing"
                )
    if not hints:
        return ""
    return "\n  likely cause: " + hints[0]


def _worst(error: Tensor) -> tuple[int, float]:
    """Index and value of the largest per-sample error (NaN counts as the largest)."""
    per_sample = error.reshape(error.shape[0], -1).nan_to_num(math.inf).amax(dim=1)
    index = int(per_sample.argmax())
    return index, float(per_sample[index])


# ----------------------------------------------------------------------------- the checks


class _Run:
    """One checking session: the subject, the data, the tolerances and the results."""

    def __init__(
        self,
        subject: _Subject,
        x: Tensor,
        z_given: Tensor | None,
        tolerances: dict[str, float],
        perturbable: nn.Module | None,
    ) -> None:
        self.subject = subject
        self.x = x
        self.z_given = z_given
        self.tol = tolerances
        self.perturbable = perturbable
        self.results: dict[str, CheckResult] = {}
        self.broken: set[str] = set()  # methods that raised: dependent checks are skipped

    # -- bookkeeping

    def record(self, result: CheckResult) -> None:
        previous = self.results.get(result.check)
        if previous is None or (previous.passed and not result.passed):
            self.results[result.check] = result

    def fail(
        self, check: str, message: str, error: float | None = None, tolerance: float | None = None
    ) -> None:
        self.record(CheckResult(check, False, message, error, tolerance))

    def ok(
        self,
        check: str,
        message: str = "",
        error: float | None = None,
        tolerance: float | None = None,
    ) -> None:
        self.record(CheckResult(check, True, message, error, tolerance))

    def skip(self, check: str, reason: str) -> None:
        if check not in self.results:
            self.results[check] = CheckResult(check, True, skipped=reason)

    def call(self, method: str, value: Tensor, *, grad: bool = False) -> tuple[Tensor, Tensor]:
        if method in self.broken:
            raise _CallFailed(method, "")
        try:
            return self.subject.call(method, value, grad=grad)
        except _CallFailed as failure:
            self.broken.add(method)
            self.fail("runs", str(failure))
            raise

    # -- checks

    def basic(self) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """runs, numel, log_det_shape, finite, round trips. Returns z, ld_f, x_rec, ld_g."""
        x = self.x
        try:
            z, ld_f = self.call("forward", x)
        except _CallFailed:
            return None
        self._check_shapes("forward", x, z, ld_f)
        try:
            x_rec, ld_g = self.call("inverse", z)
        except _CallFailed:
            return None
        self._check_shapes("inverse", z, x_rec, ld_g)
        if "runs" not in self.results:
            self.ok("runs")
        ld_f, ld_g = self._as_vector(ld_f), self._as_vector(ld_g)
        self._check_finite(
            {
                "forward output z": z,
                "forward log_det": ld_f,
                "inverse output x": x_rec,
                "inverse log_det": ld_g,
            }
        )
        self._compare(
            "round_trip",
            x_rec,
            x,
            "inverse(forward(x))",
            "x",
            cause=self._round_trip_cause(z, x_rec, x),
        )
        for label, z_points in self._z_point_sets(z):
            try:
                x_back, _ = self.call("inverse", z_points)
                z_again, _ = self.call("forward", x_back)
            except _CallFailed:
                break
            self._compare(
                "round_trip_inverse", z_again, z_points, f"forward(inverse(z)) for {label}", "z"
            )
        return z, ld_f, x_rec, ld_g

    def _check_shapes(self, method: str, given: Tensor, output: Tensor, log_det: Tensor) -> None:
        batch = given.shape[0]
        if output[0].numel() != given[0].numel():
            self.fail(
                "numel",
                f"{method} maps samples of shape {tuple(given.shape[1:])} "
                f"({given[0].numel()} elements) to shape {tuple(output.shape[1:])} "
                f"({output[0].numel()} elements): a bijection must keep the number of elements",
            )
        else:
            self.ok("numel")
        if tuple(log_det.shape) == (batch,):
            self.ok("log_det_shape")
            return
        cause = ""
        if tuple(log_det.shape) == tuple(given.shape) or tuple(log_det.shape) == tuple(
            output.shape
        ):
            cause = " (the shape of the data: did you forget to sum over the dimensions?)"
        elif log_det.numel() == 1:
            cause = (
                " (a single number: it looks summed or averaged over the batch; return one "
                "value per sample)"
            )
        elif log_det.numel() == batch:
            cause = f" (reshape it to ({batch},), e.g. with .reshape({batch}))"
        self.fail(
            "log_det_shape",
            f"{method} returned log_det of shape {tuple(log_det.shape)}; expected ({batch},), "
            f"one value per sample{cause}",
        )

    def _as_vector(self, log_det: Tensor) -> Tensor | None:
        """The log-det as ``(B,)`` when it has one value per sample, else ``None``."""
        batch = self.x.shape[0]
        return log_det.reshape(batch) if log_det.numel() == batch else None

    def _check_finite(self, values: dict[str, Tensor | None]) -> None:
        for label, value in values.items():
            if value is None:
                continue
            bad = ~torch.isfinite(value.detach())
            if bad.any():
                sample = int(bad.reshape(value.shape[0], -1).any(dim=1).nonzero()[0])
                kind = "NaN" if value.detach().isnan().any() else "infinite"
                cause = ""
                if "log_det" in label and kind == "NaN":
                    cause = (
                        "\n  likely cause: the log of a negative number (a determinant or a "
                        "scale without the absolute value): use torch.linalg.slogdet or "
                        "torch.log(torch.abs(·))"
                    )
                self.fail("finite", f"the {label} is {kind} at sample {sample}{cause}")
                return
        self.ok("finite")

    def _compare(
        self,
        check: str,
        got: Tensor,
        want: Tensor,
        got_label: str,
        want_label: str,
        *,
        cause: str = "",
        log_det: bool = False,
    ) -> bool:
        atol = self.tol["log_det_atol" if log_det else "atol"]
        rtol = self.tol["log_det_rtol" if log_det else "rtol"]
        if got.shape != want.shape:
            self.fail(
                check,
                f"{got_label} has shape {tuple(got.shape)} but {want_label} has "
                f"shape {tuple(want.shape)}",
            )
            return False
        error = (got - want).abs()
        error = torch.where(got.isnan() & want.isnan(), torch.zeros_like(error), error)
        tolerance_map = atol + rtol * want.abs().nan_to_num(0.0)
        excess = error - tolerance_map
        sample, worst_excess = _worst(excess)
        sample_error = error[sample].reshape(-1)
        sample_tol = tolerance_map[sample].reshape(-1)
        coordinate = int((sample_error - sample_tol).nan_to_num(math.inf).argmax())
        measured = float(sample_error[coordinate])
        tolerance = float(sample_tol[coordinate])
        if worst_excess <= 0:
            self.ok(
                check,
                f"largest error {error.max().item():.2g} (tolerance "
                f"{atol:.0e} + {rtol:.0e}·|value|)",
                measured,
                tolerance,
            )
            return True
        got_value = got[sample].reshape(-1)[coordinate].item()
        want_value = want[sample].reshape(-1)[coordinate].item()
        element = "" if got.dim() == 1 else f", element {coordinate}"
        expected = want_label if want_label == "0" else f"{want_label} = {want_value:.6g}"
        where = (
            f"worst sample {sample}{element}: {got_label} = {got_value:.6g}, expected {expected}"
        )
        failing = int(
            (excess.reshape(excess.shape[0], -1).nan_to_num(math.inf).amax(dim=1) > 0).sum()
        )
        self.fail(
            check,
            f"{where}\n  error {measured:.3g} > tolerance {tolerance:.3g} "
            f"({failing} of {got.shape[0]} samples fail){cause}",
            measured,
            tolerance,
        )
        return False

    def _round_trip_cause(self, z: Tensor, x_rec: Tensor, x: Tensor) -> str:
        if x_rec.shape != x.shape:
            return ""
        scale = self.tol["atol"] + self.tol["rtol"] * x.abs()
        if (
            z.shape == x_rec.shape
            and ((x_rec - z).abs() <= scale).all()
            and not ((x - z).abs() <= scale).all()
        ):
            return "\n  likely cause: inverse returned its input unchanged"
        wrong = ((x_rec - x).abs() > scale).reshape(x.shape[0], -1).any(dim=0)
        if 0 < int(wrong.sum()) < wrong.numel():
            indices = wrong.nonzero().reshape(-1).tolist()
            shown = ", ".join(map(str, indices[:8])) + (", …" if len(indices) > 8 else "")
            return (
                f"\n  only elements [{shown}] (flattened per sample) are wrong; the others "
                "are recovered: look at how inverse treats those"
            )
        try:
            z_twice, _ = self.subject.call("forward", z)
        except _CallFailed:
            return ""
        if z_twice.shape == x_rec.shape and _close(x_rec, z_twice, self.tol["atol"], 1e-4):
            return "\n  likely cause: inverse applies the forward transformation again"
        return ""

    def _z_point_sets(self, z: Tensor) -> list[tuple[str, Tensor]]:
        sets = [("z = forward(x)", z.detach())]
        if self.z_given is not None:
            sets.append(("the given z", self.z_given))
        return sets

    def log_dets(self, z: Tensor, ld_f: Tensor | None, ld_g: Tensor | None) -> None:
        """log_det_forward, log_det_inverse, log_det_sum."""
        if ld_f is None or ld_g is None:
            for check in ("log_det_forward", "log_det_inverse", "log_det_sum"):
                self.skip(check, "log_det does not have one value per sample")
            return
        sample_shape = tuple(self.x.shape[1:])
        atol = self.tol["log_det_atol"]
        # forward, against the autograd Jacobian at x
        try:
            expected_f = brute_force_log_det(lambda t: self.call("forward", t, grad=True), self.x)
        except _CallFailed:
            expected_f = None
        except ValueError as exc:
            self.fail("log_det_forward", f"cannot differentiate forward: {exc}")
            expected_f = None
        if expected_f is not None:
            self._compare_log_det(
                "log_det_forward",
                ld_f,
                expected_f,
                "forward log_det",
                "log|det ∂f/∂x|",
                sample_shape,
                atol,
            )
        # inverse, at points in the image of forward (and at the given z)
        for label, z_points in self._z_point_sets(z):
            try:
                x_points, returned = self.call("inverse", z_points)
                returned = self._as_vector(returned)
                if returned is None:
                    break
                expected_g, how = self._inverse_log_det(z_points, x_points)
            except _CallFailed:
                break
            if expected_g is None:
                self.skip("log_det_inverse", how)
                break
            self._compare_log_det(
                "log_det_inverse",
                returned,
                expected_g,
                f"inverse log_det at {label}",
                f"log|det ∂g/∂z|{how}",
                z_points.shape[1:],
                atol,
            )
        # the two directions cancel, at several point sets
        midpoints = 0.5 * (self.x + self.x.roll(1, dims=0))
        for label, points in (("x", self.x), ("midpoints between samples of x", midpoints)):
            try:
                z_points, forward_ld = self.call("forward", points)
                _, inverse_ld = self.call("inverse", z_points)
            except _CallFailed:
                return
            forward_ld, inverse_ld = self._as_vector(forward_ld), self._as_vector(inverse_ld)
            if forward_ld is None or inverse_ld is None:
                return
            self._compare(
                "log_det_sum",
                forward_ld + inverse_ld,
                torch.zeros_like(forward_ld),
                f"forward log_det + inverse log_det at {label}",
                "0",
                log_det=True,
                cause=self._sum_cause(forward_ld, inverse_ld),
            )
        if self.z_given is not None:
            try:
                x_points, inverse_ld = self.call("inverse", self.z_given)
                _, forward_ld = self.call("forward", x_points)
            except _CallFailed:
                return
            forward_ld, inverse_ld = self._as_vector(forward_ld), self._as_vector(inverse_ld)
            if forward_ld is not None and inverse_ld is not None:
                self._compare(
                    "log_det_sum",
                    forward_ld + inverse_ld,
                    torch.zeros_like(forward_ld),
                    "forward log_det + inverse log_det at the given z",
                    "0",
                    log_det=True,
                    cause=self._sum_cause(forward_ld, inverse_ld),
                )

    def _inverse_log_det(self, z_points: Tensor, x_points: Tensor) -> tuple[Tensor | None, str]:
        """Brute-force log|det ∂g/∂z| by autograd, or by the inverse function theorem."""
        try:
            return brute_force_log_det(lambda t: self.call("inverse", t, grad=True), z_points), ""
        except ValueError:
            pass
        try:
            via_forward = brute_force_log_det(
                lambda t: self.call("forward", t, grad=True), x_points.detach()
            )
        except ValueError:
            return None, "neither direction is differentiable"
        return -via_forward, " (= −log|det ∂f/∂x| at x = g(z): inverse is not differentiable)"

    def _compare_log_det(
        self,
        check: str,
        returned: Tensor,
        expected: Tensor,
        got_label: str,
        want_label: str,
        sample_shape: Sequence[int],
        atol: float,
    ) -> None:
        singular = ~torch.isfinite(expected)
        if singular.any():
            sample = int(singular.nonzero()[0])
            self.fail(
                check,
                f"the Jacobian is singular at sample {sample} (log|det| = −inf): "
                "the map is not invertible there",
            )
            return
        cause = _log_det_cause(returned.detach(), expected.detach(), sample_shape, atol)
        self._compare(
            check, returned.detach(), expected, got_label, want_label, cause=cause, log_det=True
        )

    def _sum_cause(self, forward_ld: Tensor, inverse_ld: Tensor) -> str:
        atol = max(self.tol["log_det_atol"], 1e-3)
        if forward_ld.abs().max() > atol and _close(inverse_ld, forward_ld, atol, 1e-3):
            return (
                "\n  likely cause: inverse returns the same log-det as forward; it must "
                "return its negative (log|det ∂g/∂z| = −log|det ∂f/∂x|)"
            )
        return ""

    def batch_independence(self, z: Tensor, ld_f: Tensor | None, ld_g: Tensor | None) -> None:
        batch = self.x.shape[0]
        permutation = torch.randperm(batch, generator=torch.Generator().manual_seed(0))
        half = batch // 2
        variants = {
            "the second half of the batch": torch.arange(half, batch),
            "the batch in permuted order": permutation,
            "the first sample alone": torch.arange(1),
        }
        for method, given, (reference, reference_ld) in (
            ("forward", self.x, (z, ld_f)),
            ("inverse", z.detach(), self._inverse_reference(z, ld_g)),
        ):
            if reference is None:
                continue
            for label, index in variants.items():
                try:  # a failure here is the batch's doing: it ran on the full batch
                    out, ld = self.subject.call(method, given[index])
                except _CallFailed as failure:
                    self.fail("batch_independence", f"on {label}: {failure}{_BATCH_CAUSE}")
                    return
                matches = self._compare(
                    "batch_independence",
                    out,
                    reference[index],
                    f"{method} on {label}",
                    "the same samples within the full batch",
                    cause=_BATCH_CAUSE,
                )
                if matches and reference_ld is not None and ld.numel() == len(index):
                    matches = self._compare(
                        "batch_independence",
                        ld.reshape(-1),
                        reference_ld[index],
                        f"{method} log_det on {label}",
                        "log_det within the full batch",
                        cause=_BATCH_CAUSE,
                        log_det=True,
                    )
                if not matches:
                    return

    def _inverse_reference(
        self, z: Tensor, ld_g: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None]:
        try:
            x_rec, _ = self.call("inverse", z.detach())
        except _CallFailed:
            return None, None
        return x_rec, ld_g

    def determinism(self) -> None:
        for method, value in (("forward", self.x), ("inverse", None)):
            try:
                if value is None:
                    value, _ = self.call("forward", self.x)
                first, first_ld = self.call(method, value)
                second, second_ld = self.call(method, value)
            except _CallFailed:
                return
            cause = (
                "\n  likely cause: randomness inside the map (Dropout in training mode, "
                "noise, masks drawn at each call) or state that changes at every call"
            )
            if not self._compare(
                "determinism", second, first, f"a second {method} call", "the first", cause=cause
            ):
                return
            first_ld, second_ld = self._as_vector(first_ld), self._as_vector(second_ld)
            if first_ld is not None and second_ld is not None:
                self._compare(
                    "determinism",
                    second_ld,
                    first_ld,
                    f"a second {method} log_det",
                    "the first",
                    cause=cause,
                    log_det=True,
                )

    def input_unchanged(self) -> None:
        if not self.subject.mutations:
            self.ok("input_unchanged")
            return
        methods = " and ".join(sorted(self.subject.mutations))
        size = max(self.subject.mutations.values())
        self.fail(
            "input_unchanged",
            f"{methods} modified its input tensor in place (by up to {size:.3g})\n"
            "  likely cause: an in-place operation on the input (x *= s, x += t, x[:, i] = …, "
            ".add_(), .mul_()); compute a new tensor instead (y = x * s)",
        )

    def gradients(self) -> None:
        module = self.subject.module
        parameters = (
            [(n, p) for n, p in module.named_parameters() if p.requires_grad]
            if isinstance(module, nn.Module)
            else []
        )
        if not parameters:
            self.skip("gradients", "the bijector has no trainable parameters")
            return
        for _, parameter in parameters:
            parameter.grad = None
        generator = torch.Generator().manual_seed(1)
        try:
            z, ld_f = self.call("forward", self.x, grad=True)
            x_rec, ld_g = self.call("inverse", z.detach(), grad=True)
            loss = ld_f.sum() + ld_g.sum()
            for output in (z, x_rec):
                weights = torch.randn(output.shape, generator=generator, dtype=output.dtype)
                loss = loss + (output * weights.to(output.device)).sum()
            with _time_limit(self.subject.timeout):
                loss.backward()
        except _CallFailed:
            return
        except _Timeout:
            self.fail(
                "gradients", f"the backward pass did not finish in {self.subject.timeout:g} s"
            )
            return
        except Exception as exc:
            self.fail(
                "gradients",
                f"backward through forward and inverse raised "
                f"{type(exc).__name__}: {exc}\n  likely cause: a tensor "
                "computed once (in __init__ or a cache) is reused across calls",
            )
            return
        missing = [name for name, p in parameters if p.grad is None]
        if missing:
            self.fail(
                "gradients",
                f"no gradient reaches {', '.join(missing)}\n  likely cause: the parameter is "
                "unused, or cut from the graph (.detach(), .data, .item(), NumPy, torch.no_grad, "
                "a copy made in __init__)",
            )
            return
        bad = [name for name, p in parameters if not torch.isfinite(p.grad).all()]
        if bad:
            self.fail("gradients", f"the gradient of {', '.join(bad)} is not finite")
            return
        self.ok("gradients", f"{len(parameters)} parameter tensors receive finite gradients")
        for _, parameter in parameters:
            parameter.grad = None

    def parameter_update(self) -> None:
        if self.perturbable is None:
            self.skip("parameter_update", "the bijector could not be copied")
            return
        if any(
            not self.results[c].passed
            for c in ("round_trip", "log_det_forward")
            if c in self.results
        ):
            self.skip("parameter_update", "the map is already wrong before the update")
            return
        updated = copy.deepcopy(self.perturbable)
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for parameter in updated.parameters():
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                scale = 0.05 * (parameter.abs().mean() + 0.1)
                parameter.add_(scale * noise.to(parameter.device))
        before = self.subject
        self.subject = _Subject(updated, before.name, before.timeout)
        try:
            z, ld_f = self.subject.call("forward", self.x)
            x_rec, _ = self.subject.call("inverse", z)
            expected = brute_force_log_det(
                lambda t: self.subject.call("forward", t, grad=True), self.x
            )
        except (_CallFailed, ValueError) as exc:
            self.fail("parameter_update", f"after a parameter update: {exc}")
            return
        finally:
            self.subject = before
        cause = (
            "\n  likely cause: a quantity derived from the parameters (an inverse matrix, "
            "a decomposition, a normalized vector) is computed once and not recomputed "
            "after the parameters change: a stale cache"
        )
        invertible = self._compare(
            "parameter_update",
            x_rec,
            self.x,
            "inverse(forward(x)) after the update",
            "x",
            cause=cause,
        )
        if invertible and ld_f.numel() == expected.numel():
            self._compare(
                "parameter_update",
                ld_f.reshape(-1),
                expected,
                "forward log_det after the update",
                "log|det ∂f/∂x|",
                cause=cause,
                log_det=True,
            )


_BATCH_CAUSE = (
    "\n  likely cause: the result for one sample depends on the other samples: batch "
    "statistics (BatchNorm in training mode, a mean or std over the batch, ActNorm "
    "initialised again at every call) or a log_det reduced over the batch"
)


# ----------------------------------------------------------------------------- set-up


def _to_dtype(module: object, dtype: torch.dtype) -> object:
    """A deep copy of ``module`` in ``dtype`` (the caller's object is never changed)."""
    duplicate = copy.deepcopy(module)
    return duplicate.to(dtype) if isinstance(duplicate, nn.Module) else duplicate


def _prepare(
    bijector: object,
    x: Tensor,
    dtype: torch.dtype | None,
    timeout: float | None,
) -> tuple[object, torch.dtype, list[str], bool]:
    """Choose the dtype: float64 if forward and inverse work in it, float32 otherwise.

    Returns the module to check (a copy when possible), its dtype, notes and whether the
    module is a private copy (so that it may be perturbed).
    """
    name = type(bijector).__name__
    notes: list[str] = []
    try:
        copy.deepcopy(bijector)
    except Exception as exc:
        own = next(bijector.parameters(), None) if isinstance(bijector, nn.Module) else None
        chosen = own.dtype if own is not None and own.is_floating_point() else torch.float64
        notes.append(
            f"the bijector could not be copied ({type(exc).__name__}): it is checked "
            "as it is, so it may initialise itself on this batch"
        )
        return bijector, chosen, notes, False
    candidates = [dtype] if dtype is not None else [torch.float64, torch.float32]
    reason = ""
    for candidate in candidates:
        module = _to_dtype(bijector, candidate)
        if candidate == candidates[-1]:
            if reason:
                notes.append(f"checked in float32 because in float64 {reason}")
            return module, candidate, notes, True
        trial = _Subject(module, name, timeout)
        try:
            z_trial, _ = trial.call("forward", x.to(candidate))
            x_trial, _ = trial.call("inverse", z_trial)
        except _CallFailed as failure:
            if "did not return within" in str(failure):
                return module, candidate, notes, True
            reason = str(failure).removeprefix(f"{name}.")
            continue
        wrong = [t.dtype for t in (z_trial, x_trial) if t.dtype != candidate]
        if not wrong:
            return module, candidate, notes, True
        reason = f"it returned {wrong[0]}"
    raise AssertionError("unreachable")  # pragma: no cover


def _run_checks(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None,
    selected: Sequence[str],
    dtype: torch.dtype | None,
    timeout: float | None,
    tolerances: dict[str, float],
) -> CheckReport:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"check_bijector: x must be a floating torch.Tensor, got "
            f"{getattr(x, 'dtype', type(x).__name__)}"
        )
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(
            f"check_bijector: x must be a batch (B, …) with B ≥ 2 samples, got "
            f"shape {tuple(x.shape)}"
        )
    if z is not None and (not isinstance(z, Tensor) or z.dim() < 2 or z.shape[0] < 2):
        raise ValueError("check_bijector: z must be a batch (B, …) with B ≥ 2 samples")
    unknown = set(tolerances) - set(_TOLERANCES[torch.float64])
    if unknown:
        raise TypeError(
            f"check_bijector: unknown tolerance {sorted(unknown)}; "
            f"use {sorted(_TOLERANCES[torch.float64])}"
        )
    module, chosen, notes, owned = _prepare(bijector, x, dtype, timeout)
    name = type(bijector).__name__
    run = _Run(
        _Subject(module, name, timeout),
        x.detach().to(chosen),
        None if z is None else z.detach().to(chosen),
        {**_TOLERANCES[chosen], **tolerances},
        module if owned and isinstance(module, nn.Module) else None,
    )
    basics = run.basic()
    if basics is not None:
        z_image, ld_f, _, ld_g = basics
        if {"log_det_forward", "log_det_inverse", "log_det_sum"} & set(selected):
            run.log_dets(z_image, ld_f, ld_g)
        if "batch_independence" in selected:
            run.batch_independence(z_image, ld_f, ld_g)
        if "determinism" in selected:
            run.determinism()
        if "gradients" in selected:
            run.gradients()
        if "parameter_update" in selected:
            run.parameter_update()
    run.input_unchanged()
    for check in selected:
        run.skip(check, "forward or inverse did not run")
    report = CheckReport(name, chosen, [run.results[c] for c in selected], notes)
    if not report.passed:
        raise BijectorCheckError(report)
    return report


def check_bijector(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None = None,
    dtype: torch.dtype | None = None,
    timeout: float | None = 60.0,
    **tolerances: float,
) -> CheckReport:
    """Run every check of :data:`CHECKS` on the batch ``x`` and return the report.

    Args:
        bijector: any object with ``forward(x) -> (z, log_det)`` and
            ``inverse(z) -> (x, log_det)``; it is not modified (checks run on a copy).
        x: a batch ``(B, …)`` of ``B ≥ 2`` points in the domain of ``forward``.
        z: optional extra points ``(B', …)`` in the domain of ``inverse`` (e.g. base samples,
            for a bijector onto the whole space); by default ``inverse`` is checked on
            ``forward(x)`` only, so maps onto a subset of the space are never rejected.
        dtype: force the dtype; by default float64, or float32 if the module fails in float64.
        timeout: seconds allowed for one call of ``forward`` or ``inverse`` (``None``: no
            limit; only enforced in the main thread on Unix).
        **tolerances: ``atol``, ``rtol`` (round trips, batch independence, determinism) and
            ``log_det_atol``, ``log_det_rtol``; a value passes when
            ``|returned − expected| ≤ atol + rtol·|expected|``.

    Returns:
        The :class:`CheckReport` (print it for a table).

    Raises:
        BijectorCheckError: listing every failed check, with the worst sample, the error, the
            tolerance and the likely cause.
    """
    return _run_checks(
        bijector, x, z=z, selected=list(CHECKS), dtype=dtype, timeout=timeout, tolerances=tolerances
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
    return _run_checks(
        bijector,
        x,
        z=z,
        selected=_INVERTIBILITY,
        dtype=dtype,
        timeout=timeout,
        tolerances=tolerances,
    )


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
    return _run_checks(
        bijector, x, z=z, selected=_LOG_DET, dtype=dtype, timeout=timeout, tolerances=tolerances
    )


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
    return _run_checks(
        bijector,
        x,
        z=None,
        selected=("runs", "batch_independence"),
        dtype=dtype,
        timeout=timeout,
        tolerances=tolerances,
    )


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
