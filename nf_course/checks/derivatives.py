"""Derivatives: autograd's derivatives of each direction, with respect to its input and to the
parameters, against central finite differences in the run's dtype.

A value computed under ``torch.no_grad``, through ``.item()`` or NumPy, or read from a stale
cache has the right value and the wrong derivative: the checks that compare values cannot see
it, and training with it silently goes wrong. Each check takes a seeded random direction and
compares autograd's directional derivative of a random linear functional of the output (and,
separately, of the log-det) with ``(L(θ + hv) − L(θ − hv)) / 2h``. A sample passes when some step
``h`` agrees within ``rtol`` of the larger of the two derivatives' magnitudes (with a floor for
rounding), so that noisy maps (adaptive ODE solvers, iterative inverses) are not rejected for
their noise. Every evaluation sees the same random numbers, so that stochastic estimators that
are reproducible under ``torch.manual_seed`` are differentiated consistently."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from nf_course.checks import diagnosis
from nf_course.checks.run import Run, per_sample, seeded
from nf_course.checks.subject import CallFailed

_STEPS = {torch.float64: (1e-6, 1e-4, 1e-2), torch.float32: (1e-3, 1e-2, 3e-2)}
_RTOL = {torch.float64: 1e-3, torch.float32: 3e-2}
_SHOWN = 4  # disagreeing parameters named in a message


@contextmanager
def _same_randomness() -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@dataclass
class _Functionals:
    """Random weights of the linear functionals ``L_b = Σ_j w_bj·output_bj`` and
    ``L_b = c_b·log_det_b`` (one value per sample ``b``)."""

    output: Tensor
    log_det: Tensor

    @classmethod
    def draw(cls, output: Tensor, seed: int) -> _Functionals:
        generator = seeded(seed)
        weights = torch.randn(output.shape, generator=generator, dtype=output.dtype)
        per_sample_weights = torch.randn(output.shape[0], generator=generator, dtype=output.dtype)
        return cls(weights, per_sample_weights)

    def values(self, output: Tensor, log_det: Tensor | None) -> dict[str, Tensor]:
        """``{quantity: L_b per sample}``; the log-det's only if it has one value per sample."""
        values = {"output": (self.output * output).reshape(output.shape[0], -1).sum(dim=1)}
        if log_det is not None:
            values["log_det"] = self.log_det * log_det
        return values


@dataclass
class _Estimates:
    """One quantity's directional derivatives: autograd's, its Cauchy–Schwarz bound, and the
    finite-difference estimates with their rounding floors, one per step."""

    autograd: Tensor
    bound: Tensor
    finite: list[Tensor]
    floors: list[Tensor]

    def agreeing(self, rtol: float) -> Tensor:
        """Per entry: some step's estimate agrees (entries with no finite estimate agree)."""
        agree = torch.zeros_like(self.autograd, dtype=torch.bool)
        judged = torch.zeros_like(agree)
        for estimate, floor in zip(self.finite, self.floors, strict=True):
            usable = torch.isfinite(estimate)
            magnitude = torch.maximum(self.bound, estimate.abs())
            close = (self.autograd - estimate).abs() <= rtol * magnitude + floor
            agree |= usable & close
            judged |= usable
        return agree | ~judged

    def closest(self, index: int) -> float:
        """The finite-difference estimate closest to autograd's at ``index``."""
        candidates = [e[index] for e in self.finite if torch.isfinite(e[index])]
        if not candidates:
            return float("nan")
        return float(min(candidates, key=lambda e: float((e - self.autograd[index]).abs())))


def _finite_differences(
    evaluate: Callable[[float], dict[str, Tensor] | None],
    base: dict[str, Tensor],
    dtype: torch.dtype,
) -> dict[str, tuple[list[Tensor], list[Tensor]]]:
    """``{quantity: ([estimate per step], [floor per step])}`` from ``evaluate(±h)`` and the
    values at ``h = 0`` (``base``): central differences, and both one-sided ones, so that at a
    kink (ReLU at 0, a clamp at its bound) autograd's one-sided derivative is recognized."""
    eps = torch.finfo(dtype).eps
    result: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    for step in _STEPS[dtype]:
        plus, minus = evaluate(step), evaluate(-step)
        for quantity, at_zero in base.items():
            estimates, floors = result.setdefault(quantity, ([], []))
            at_zero = at_zero.detach()
            ends = [
                (values[quantity], sign)
                for values, sign in ((plus, 1), (minus, -1))
                if values is not None and quantity in values
            ]
            for end, sign in ends:  # one-sided
                estimates.append(sign * (end - at_zero) / step)
                floors.append(64 * eps * (end.abs() + at_zero.abs()) / step)
            if len(ends) == 2:
                (high, _), (low, _) = ends
                estimates.append((high - low) / (2 * step))
                floors.append(64 * eps * (high.abs() + low.abs()) / (2 * step))
    return result


def _with_input_derivatives(run: Run, method: str, points: Tensor) -> str:
    """Check ``method``'s derivatives with respect to its input at ``points``; ``""`` if they
    agree, else what is wrong (and the method's autograd is marked untrusted)."""
    batch = points.shape[0]
    direction = torch.randn(points.shape, generator=seeded(5), dtype=points.dtype)
    direction = direction * (points.abs().mean() + 1e-2)
    leaf = points.detach().clone().requires_grad_(True)
    with _same_randomness():
        output, log_det = run.call(method, leaf, grad=True)
    functionals = _Functionals.draw(output, seed=6)
    values = functionals.values(output, per_sample(log_det, batch))
    if not output.requires_grad:
        run.untrusted_autograd[method] = "its output is not differentiable"
        return f"{method}'s output does not depend differentiably on its input"

    def evaluate(step: float) -> dict[str, Tensor] | None:
        try:
            with _same_randomness():
                out, ld = run.subject.call(method, points + step * direction)
        except CallFailed:
            return None
        return functionals.values(out, per_sample(ld, batch))

    finite = _finite_differences(evaluate, values, points.dtype)
    for quantity, value in values.items():
        if value.requires_grad:
            (gradient,) = torch.autograd.grad(
                value.sum(), leaf, retain_graph=True, allow_unused=True
            )
        else:
            gradient = None
        gradient = torch.zeros_like(points) if gradient is None else gradient
        flat_gradient, flat_direction = gradient.reshape(batch, -1), direction.reshape(batch, -1)
        estimates = _Estimates(
            (flat_gradient * flat_direction).sum(dim=1),
            flat_gradient.norm(dim=1) * flat_direction.norm(dim=1),
            *finite.get(quantity, ([], [])),
        )
        agreeing = estimates.agreeing(_RTOL[points.dtype])
        if not agreeing.all():
            sample = int((~agreeing).nonzero()[0])
            failing = int((~agreeing).sum())
            if quantity == "output":
                run.untrusted_autograd[method] = "they disagree with finite differences"
            return (
                f"{method}: the derivative of its {quantity} with respect to its input, along a "
                f"random direction, is {float(estimates.autograd[sample]):.6g} by autograd and "
                f"{estimates.closest(sample):.6g} by finite differences at sample {sample} "
                f"({failing} of {batch} samples disagree){diagnosis.DETACHED}"
            )
    return ""


def input_derivatives(run: Run) -> None:
    """Forward always; inverse where its derivatives must be right (``differentiable_inverse``)
    or where autograd claims them (a wrong one is then not used for the log-det)."""
    e = run.evaluation
    assert e is not None
    problem = _with_input_derivatives(run, "forward", run.x)
    if problem:
        run.fail("input_derivatives", problem)
        return
    problem = _with_input_derivatives(run, "inverse", e.z)
    if problem and run.differentiable_inverse:
        run.fail(
            "input_derivatives",
            problem
            + "\n  the inverse must be differentiable here (sampling and reverse-KL training "
            "differentiate through it): keep it out of torch.no_grad and .detach(); an iterative "
            "solve run without gradients (root finding, a fixed-point loop) must end with one "
            "differentiable Newton step from the converged root, which gives exact derivatives",
        )
        return
    note = f" (inverse not checked: {problem})" if problem else ""
    run.ok("input_derivatives", f"autograd agrees with finite differences{note}")


def _parameter_problem(run: Run, method: str, points: Tensor) -> str:
    """Check the derivatives of ``method``'s output and log-det with respect to the parameters;
    ``""`` if they agree, else which parameters disagree and how."""
    named = run.parameters
    names = [name for name, _ in named]
    parameters = [p for _, p in named]
    generator = seeded(7)
    directions = [
        torch.randn(p.shape, generator=generator, dtype=p.dtype) * (p.detach().abs().mean() + 1e-2)
        for p in parameters
    ]
    batch = points.shape[0]
    with _same_randomness():
        output, log_det = run.call(method, points, grad=True)
    functionals = _Functionals.draw(output, seed=8)
    totals = {q: v.sum() for q, v in functionals.values(output, per_sample(log_det, batch)).items()}
    gradients = {}
    for quantity, total in totals.items():
        grads = (
            torch.autograd.grad(total, parameters, retain_graph=True, allow_unused=True)
            if total.requires_grad
            else [None] * len(parameters)
        )
        gradients[quantity] = [
            torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)
        ]

    def disagreeing(chosen: list[int]) -> dict[str, _Estimates]:
        shifts = [d if i in chosen else torch.zeros_like(d) for i, d in enumerate(directions)]

        def evaluate(step: float) -> dict[str, Tensor] | None:
            try:
                with run.subject.shifted(shifts, step), _same_randomness():
                    out, ld = run.subject.call(method, points)
            except CallFailed:
                return None
            return {
                q: v.sum().reshape(1)
                for q, v in functionals.values(out, per_sample(ld, batch)).items()
            }

        base = {q: total.reshape(1) for q, total in totals.items()}
        finite = _finite_differences(evaluate, base, points.dtype)
        wrong = {}
        for quantity in totals:
            autograd = sum((gradients[quantity][i] * directions[i]).sum() for i in chosen)
            bound = torch.sqrt(
                sum(gradients[quantity][i].pow(2).sum() for i in chosen)
            ) * torch.sqrt(sum(directions[i].pow(2).sum() for i in chosen))
            estimates = _Estimates(
                torch.as_tensor(autograd).reshape(1),
                bound.reshape(1),
                *finite.get(quantity, ([], [])),
            )
            if not estimates.agreeing(_RTOL[points.dtype]).all():
                wrong[quantity] = estimates
        return wrong

    if not disagreeing(list(range(len(parameters)))):
        return ""
    lines = []
    for index, name in enumerate(names):
        for quantity, estimates in disagreeing([index]).items():
            by_autograd, by_differences = float(estimates.autograd[0]), estimates.closest(0)
            if abs(by_differences) < 1e-12 < abs(by_autograd):
                cause = diagnosis.STALE_CACHE
            elif abs(by_autograd) < 1e-12 < abs(by_differences):
                cause = diagnosis.DETACHED
            else:
                cause = "\n  likely cause: a part of the computation is cut from the graph"
            lines.append(
                f"{method}: the derivative of its {quantity} with respect to {name}, along a "
                f"random direction, is {by_autograd:.6g} by autograd and {by_differences:.6g} "
                f"by finite differences{cause}"
            )
    if len(lines) > _SHOWN:
        lines = [*lines[:_SHOWN], f"… and {len(lines) - _SHOWN} more disagreeing derivatives"]
    return "\n".join(lines) or f"{method}: the derivatives disagree with finite differences"


def parameter_derivatives(run: Run) -> None:
    """Forward at x; inverse at forward(x) where it must be differentiable."""
    if not run.parameters:
        run.skip("parameter_derivatives", "the bijector has no trainable parameters")
        return
    e = run.evaluation
    assert e is not None
    problems = [_parameter_problem(run, "forward", run.x)]
    if run.differentiable_inverse:
        problems.append(_parameter_problem(run, "inverse", e.z))
    problems = [problem for problem in problems if problem]
    if problems:
        run.fail("parameter_derivatives", "\n".join(problems))
    else:
        run.ok("parameter_derivatives", f"{len(run.parameters)} parameter tensors checked")
