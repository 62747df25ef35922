"""The public checks: choose the dtype and a private copy of the module, run the properties of
the table in :mod:`nf_course.checks.registry`, and raise :class:`BijectorCheckError` on failure."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from nf_course.checks import diagnosis
from nf_course.checks.registry import CHECKS, PROPERTIES, needed
from nf_course.checks.report import BijectorCheckError, CheckReport
from nf_course.checks.run import Run
from nf_course.checks.subject import CallFailed, CallTimedOut, Subject, active_overrides, where

# Default tolerances: |returned − expected| ≤ atol + rtol·|expected|.
TOLERANCES = {
    torch.float64: {"atol": 1e-6, "rtol": 1e-5, "log_det_atol": 1e-6, "log_det_rtol": 1e-5},
    torch.float32: {"atol": 1e-4, "rtol": 1e-3, "log_det_atol": 1e-3, "log_det_rtol": 1e-3},
}


def _reachable_tensors(root: object, depth: int = 6) -> Iterator[Tensor]:
    """Tensors held in the attributes of ``root`` and of the objects it holds (not in classes,
    functions or modules of code), to ``depth`` levels."""
    seen: set[int] = set()
    pending: list[tuple[object, int]] = [(root, 0)]
    while pending:
        item, level = pending.pop()
        if id(item) in seen or level > depth:
            continue
        seen.add(id(item))
        if isinstance(item, Tensor):
            yield item
        elif isinstance(item, dict):
            pending += [(value, level + 1) for value in item.values()]
        elif isinstance(item, list | tuple | set):
            pending += [(value, level + 1) for value in item]
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            pending += [(value, level + 1) for value in vars(item).values()]


def private_copy(module: object) -> object | None:
    """A deep copy of ``module``, or ``None`` if it cannot be copied.

    Tensors computed by autograd (a cached inverse, ``weight_norm``'s weight, a third-party
    transform's cache) refuse ``copy.deepcopy``; they are copied detached."""
    try:
        return copy.deepcopy(module)
    except Exception:
        pass
    memo = {id(t): t.detach().clone() for t in _reachable_tensors(module) if t.grad_fn is not None}
    try:
        return copy.deepcopy(module, memo)
    except Exception:
        return None


def _prepare(
    bijector: object, x: Tensor, dtype: torch.dtype | None, timeout: float | None
) -> tuple[object, torch.dtype, list[str], bool]:
    """Choose the dtype: float64 if forward and inverse work in it, float32 otherwise.

    Returns the module to check, its dtype, notes, and whether it is a private copy.
    """
    name = type(bijector).__name__
    if private_copy(bijector) is None:
        own = next(bijector.parameters(), None) if isinstance(bijector, nn.Module) else None
        chosen = own.dtype if own is not None and own.is_floating_point() else x.dtype
        note = (
            "the bijector could not be copied: it is checked as it is (its parameters are "
            "restored afterwards, but it may initialise itself on this batch)"
        )
        return bijector, chosen, [note], False
    candidates = [dtype] if dtype is not None else [torch.float64, torch.float32]
    reason = ""
    for candidate in candidates:
        module = private_copy(bijector)
        if isinstance(module, nn.Module):
            module = module.to(candidate)
        if candidate == candidates[-1]:
            notes = [f"checked in float32 because in float64 {reason}"] if reason else []
            return module, candidate, notes, True
        trial = Subject(module, name, timeout)
        try:
            z_trial, _ = trial.call("forward", x.to(candidate))
            x_trial, _ = trial.call("inverse", z_trial)
        except CallTimedOut:
            return module, candidate, [], True
        except CallFailed as failure:
            reason = str(failure).removeprefix(f"{name}.")
            continue
        wrong = [t.dtype for t in (z_trial, x_trial) if t.dtype != candidate]
        if not wrong:
            return module, candidate, [], True
        reason = f"it returned {wrong[0]}"
    raise AssertionError("the last candidate dtype always returns")  # pragma: no cover


def _validate(x: object, z: object, tolerances: dict[str, float]) -> None:
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
    unknown = set(tolerances) - set(TOLERANCES[torch.float64])
    if unknown:
        raise TypeError(
            f"check_bijector: unknown tolerance {sorted(unknown)}; "
            f"use {sorted(TOLERANCES[torch.float64])}"
        )


def _verify_all(run: Run, selected: Sequence[str]) -> None:
    """Run the needed properties in the table's order; each failure stays with its property."""
    wanted = needed(tuple(selected))
    for prop in PROPERTIES:
        if prop.name not in wanted or prop.name in run.results:
            continue
        blocking = [
            r
            for r in prop.requires
            if r not in run.results or not run.results[r].passed or run.results[r].skipped
        ]
        if blocking:
            reason = (
                "forward or inverse did not run" if "runs" in blocking else f"{blocking[0]} failed"
            )
            run.skip(prop.name, reason)
            continue
        try:
            prop.verify(run)
        except CallFailed:
            pass  # recorded under "runs" by Run.call
        except Exception as exc:
            run.fail(
                prop.name,
                f"checking it raised {type(exc).__name__}: {diagnosis.short(str(exc))}{where(exc)}"
                + diagnosis.autograd_failure_cause(str(exc), run.subject.mutations),
            )
        run.skip(prop.name, "forward or inverse did not run")


def run_checks(
    bijector: object,
    x: Tensor,
    *,
    z: Tensor | None,
    selected: Sequence[str],
    dtype: torch.dtype | None,
    timeout: float | None,
    differentiable_inverse: bool,
    tolerances: dict[str, float],
) -> CheckReport:
    """Check the ``selected`` properties (keys of :data:`CHECKS`) and return the report.

    Raises:
        BijectorCheckError: if any selected property fails.
    """
    _validate(x, z, tolerances)
    name = type(bijector).__name__
    overrides = active_overrides()
    module, chosen, notes, private = _prepare(bijector, x, dtype, timeout)
    run = Run(
        Subject(module, name, timeout),
        x.detach().to(chosen),
        None if z is None else z.detach().to(chosen),
        {**TOLERANCES[chosen], **tolerances},
        CHECKS,
        differentiable_inverse=differentiable_inverse,
        private=private,
    )
    if overrides:
        run.fail(
            "runs", f"{overrides}: they intercept every torch operation, so nothing can be checked"
        )
    restore = not private and isinstance(module, nn.Module)
    saved = copy.deepcopy(module.state_dict()) if restore else None
    try:
        _verify_all(run, selected)
    finally:
        if saved is not None:
            module.load_state_dict(saved)
    report = CheckReport(name, chosen, [run.results[c] for c in selected], notes)
    if not report.passed:
        raise BijectorCheckError(report)
    return report
