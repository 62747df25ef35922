"""The table of properties: each one's name, the words a student reads, the function that verifies
it, and what must hold (``requires``) or have run (``after``) before it. The table's order is the
order of the run; :data:`CHECKS` and the selections of the single checks derive from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nf_course.checks import derivatives, log_dets, parameters, structure
from nf_course.checks.run import Run


@dataclass(frozen=True)
class Property:
    """One property a bijector must have.

    Attributes:
        name: its key, shown in brackets in every message (``[round_trip]``).
        description: the property in a student's words.
        verify: records the property's result on a :class:`Run`.
        requires: properties that must pass first (else this one is not run).
        after: properties that must have run first (their findings are used, not required).
    """

    name: str
    description: str
    verify: Callable[[Run], None]
    requires: tuple[str, ...] = ("runs",)
    after: tuple[str, ...] = ()


PROPERTIES: tuple[Property, ...] = (
    Property(
        "runs", "forward and inverse run and return (output, log_det)", structure.runs, requires=()
    ),
    Property(
        "log_det_shape",
        "log_det has shape (B,)",
        structure.log_det_shape,
        requires=(),
        after=("runs",),
    ),
    Property(
        "numel",
        "output keeps the batch size and the number of elements per sample",
        structure.numel,
        requires=(),
        after=("runs",),
    ),
    Property("finite", "outputs and log-dets are finite", structure.finite),
    Property("round_trip", "inverse(forward(x)) returns x", structure.round_trip),
    Property("round_trip_inverse", "forward(inverse(z)) returns z", structure.round_trip_inverse),
    Property(
        "input_derivatives",
        "autograd's derivatives with respect to the input agree with finite differences",
        derivatives.input_derivatives,
    ),
    Property(
        "log_det_forward",
        "forward log_det equals log|det ∂f/∂x| of the Jacobian",
        log_dets.log_det_forward,
        requires=("runs", "log_det_shape"),
        after=("input_derivatives",),
    ),
    Property(
        "log_det_inverse",
        "inverse log_det equals log|det ∂g/∂z| of the Jacobian",
        log_dets.log_det_inverse,
        requires=("runs", "log_det_shape"),
        after=("input_derivatives",),
    ),
    Property(
        "log_det_sum",
        "forward and inverse log_dets sum to zero",
        log_dets.log_det_sum,
        requires=("runs", "log_det_shape"),
    ),
    Property(
        "batch_independence",
        "each sample's result does not depend on the rest of the batch",
        structure.batch_independence,
    ),
    Property("determinism", "two calls on the same input agree", structure.determinism),
    Property("gradients", "every parameter receives a finite gradient", parameters.gradients),
    Property(
        "parameter_derivatives",
        "autograd's derivatives with respect to the parameters agree with finite differences",
        derivatives.parameter_derivatives,
    ),
    Property(
        "parameter_update",
        "still invertible with the right log_det after a parameter update",
        parameters.parameter_update,
        after=("round_trip", "log_det_forward"),
    ),
    Property(
        "input_unchanged",
        "the input tensor is not modified",
        structure.input_unchanged,
        requires=(),
    ),
)

#: Every check, in the order it runs, with the words a student reads.
CHECKS: dict[str, str] = {p.name: p.description for p in PROPERTIES}

INVERTIBILITY = ("runs", "numel", "finite", "round_trip", "round_trip_inverse", "input_unchanged")
LOG_DET = ("runs", "log_det_shape", "finite", "log_det_forward", "log_det_inverse", "log_det_sum")
BATCH_INDEPENDENCE = ("runs", "batch_independence")


def needed(selected: tuple[str, ...] | list[str]) -> set[str]:
    """The selected properties and everything they require or come after, transitively."""
    by_name = {p.name: p for p in PROPERTIES}
    unknown = set(selected) - set(by_name)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(by_name)}")
    result: set[str] = set()
    pending = list(selected)
    while pending:
        name = pending.pop()
        if name not in result:
            result.add(name)
            pending += [*by_name[name].requires, *by_name[name].after]
    return result
