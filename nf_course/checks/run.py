"""The state of one check run (:class:`Run`): the subject, the data, the tolerances, the results
so far, and the calls and comparisons that every property uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nf_course.checks.compare import compare
from nf_course.checks.report import CheckResult
from nf_course.checks.subject import CallFailed, Subject


@dataclass
class Evaluation:
    """``z, forward_log_det = forward(x)`` and ``x_back, inverse_log_det = inverse(z)`` on the
    checked batch, detached, as returned."""

    z: Tensor
    forward_log_det: Tensor
    x_back: Tensor
    inverse_log_det: Tensor

    @property
    def ld_f(self) -> Tensor | None:
        """The forward log-det as ``(B,)``, or ``None`` if it has not one value per sample."""
        return per_sample(self.forward_log_det, self.z.shape[0])

    @property
    def ld_g(self) -> Tensor | None:
        """The inverse log-det as ``(B,)``, or ``None`` if it has not one value per sample."""
        return per_sample(self.inverse_log_det, self.z.shape[0])


def per_sample(log_det: Tensor, batch: int) -> Tensor | None:
    """``log_det`` as ``(batch,)`` when it has one value per sample, else ``None``."""
    return log_det.reshape(batch) if log_det.numel() == batch else None


@dataclass
class Run:
    """One checking session.

    Attributes:
        subject: the checked code.
        x: the batch, in the dtype of the run.
        z_given: extra points in the domain of ``inverse``, or ``None``.
        tol: the tolerances (``atol``, ``rtol``, ``log_det_atol``, ``log_det_rtol``).
        descriptions: the words for each property, as in :data:`CHECKS`.
        differentiable_inverse: the inverse must be differentiable (checked, not assumed).
        private: the module is the run's own copy, or will be restored after the run, so that
            its parameters may be changed.
        results: the result of each property so far.
        broken: methods that raised: later calls of them fail at once.
        evaluation: forward and inverse on ``x``, once ``runs`` has passed.
        first_calls: ``(method, input, output, log_det)`` of each call of ``runs`` that returned.
        untrusted_autograd: methods whose autograd derivatives disagree with finite
            differences (their brute-force Jacobian is not used).
    """

    subject: Subject
    x: Tensor
    z_given: Tensor | None
    tol: dict[str, float]
    descriptions: dict[str, str]
    differentiable_inverse: bool = False
    private: bool = True
    results: dict[str, CheckResult] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    evaluation: Evaluation | None = None
    first_calls: list[tuple[str, Tensor, Tensor, Tensor]] = field(default_factory=list)
    untrusted_autograd: dict[str, str] = field(default_factory=dict)

    # -- results

    def record(self, result: CheckResult) -> None:
        """Keep the first failure of a property (a later pass does not hide it)."""
        result.description = self.descriptions[result.check]
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
            self.record(CheckResult(check, True, skipped=reason))

    def failed(self, check: str) -> bool:
        return check in self.results and not self.results[check].passed

    # -- calls

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return self.subject.parameters()

    def call(self, method: str, value: Tensor, *, grad: bool = False) -> tuple[Tensor, Tensor]:
        """Call the subject; a failure is recorded under ``runs`` and the method marked broken."""
        if method in self.broken:
            raise CallFailed(method, "")
        try:
            return self.subject.call(method, value, grad=grad)
        except CallFailed as failure:
            self.broken.add(method)
            self.fail("runs", str(failure))
            raise

    def z_point_sets(self) -> list[tuple[str, Tensor]]:
        """Where ``inverse`` is checked: the image of ``forward``, and the given ``z``."""
        assert self.evaluation is not None
        sets = [("z = forward(x)", self.evaluation.z)]
        if self.z_given is not None:
            sets.append(("the given z", self.z_given))
        return sets

    # -- comparisons

    def compare(
        self,
        check: str,
        got: Tensor,
        want: Tensor,
        got_label: str,
        want_label: str,
        *,
        cause: str | Callable[[], str] = "",
        log_det: bool = False,
    ) -> bool:
        """Compare with the run's tolerances; record a pass or a failure with the worst sample.

        ``cause`` is the likely cause, or a function computing it (called only on failure)."""
        atol = self.tol["log_det_atol" if log_det else "atol"]
        rtol = self.tol["log_det_rtol" if log_det else "rtol"]
        if got.shape != want.shape:
            self.fail(
                check,
                f"{got_label} has shape {tuple(got.shape)} but {want_label} has "
                f"shape {tuple(want.shape)}",
            )
            return False
        result = compare(got, want, atol, rtol)
        if result.passed:
            self.ok(
                check,
                f"largest error {result.largest_error:.2g} (tolerance {atol:.0e} + "
                f"{rtol:.0e}·|value|)",
                result.error,
                result.tolerance,
            )
            return True
        cause = cause() if callable(cause) else cause
        element = "" if got.dim() == 1 else f", element {result.element}"
        expected = want_label if want_label == "0" else f"{want_label} = {result.want:.6g}"
        self.fail(
            check,
            f"worst sample {result.sample}{element}: {got_label} = {result.got:.6g}, expected "
            f"{expected}\n  error {result.error:.3g} > tolerance {result.tolerance:.3g} "
            f"({result.failing_samples} of {got.shape[0]} samples fail){cause}",
            result.error,
            result.tolerance,
        )
        return False


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed (the checks never touch the global generator)."""
    return torch.Generator().manual_seed(seed)
