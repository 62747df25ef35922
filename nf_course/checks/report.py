"""What a check run returns: one :class:`CheckResult` per property, gathered in a
:class:`CheckReport`, and :class:`BijectorCheckError`, raised when any property fails."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: the property's key in :data:`nf_course.checks.CHECKS` (e.g. ``"log_det_forward"``).
        passed: whether the property holds (``True`` also for a check that was skipped).
        message: what was measured, and for a failure, where, by how much and the likely cause.
        error: the largest measured error, where the check measures one.
        tolerance: the tolerance it was compared with.
        skipped: why the check did not run, or ``None``.
        description: the property in the words a student reads.
    """

    check: str
    passed: bool
    message: str = ""
    error: float | None = None
    tolerance: float | None = None
    skipped: str | None = None
    description: str = ""

    def __str__(self) -> str:
        mark = "-" if self.skipped else ("✓" if self.passed else "✗")
        head = f"{mark} [{self.check}] {self.description}"
        body = f"not run: {self.skipped}" if self.skipped else self.message
        return head + ("\n    " + body.replace("\n", "\n    ") if body else "")


@dataclass
class CheckReport:
    """Everything a check run measured.

    Attributes:
        name: the checked object's class name.
        dtype: the dtype the checks ran in.
        results: one :class:`CheckResult` per check, in the order of :data:`CHECKS`.
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

    def _headline(self) -> str:
        ran = [result for result in self.results if not result.skipped]
        status = "passed all" if self.passed else f"failed {len(self.failures)} of {len(ran)}"
        return f"{self.name} {status} checks (in {str(self.dtype).removeprefix('torch.')})"

    def __str__(self) -> str:
        lines = [self._headline()]
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
        lines = [report._headline() + ":"]
        lines += [f"  note: {note}" for note in report.notes]
        lines += [str(result) for result in report.failures]
        passed = [result.check for result in report.results if result.passed and not result.skipped]
        if passed:
            lines.append("passed: " + ", ".join(passed))
        super().__init__("\n".join(lines))
        self.report = report

    @property
    def failed_checks(self) -> list[str]:
        """The keys of the failed checks, e.g. ``["round_trip", "log_det_sum"]``."""
        return self.report.failed_checks
