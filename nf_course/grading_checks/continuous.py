"""Assignment 08, continuous-in-time flows (``solutions/08_continuous``; book chapters 10 and 11):
the exact divergence, Hutchinson's estimator and a fixed-step CNF with Euler and RK4 steps.

The fixed-step scheme is fully specified by the assignment, so the CNF is compared with the same
scheme evaluated here (a wrong stage time or a log-det increment at the wrong point is not
hidden by the solver's own error), on time-dependent fields, intervals that do not start at 0
and odd step counts, together with its derivatives in the input and the field's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from nf_course.grading_checks.common import GradingCheckError, check_close, randn

Field = Callable[[Tensor], Tensor]
TimeField = Callable[[float, Tensor], Tensor]


class _Field(nn.Module):
    """``f(t, z) = tanh(z W1ᵀ + t c + b) W2ᵀ + z Aᵀ``, ``(B, D) -> (B, D)``, seeded, float64;
    ``t`` may be a float or a 0-dimensional tensor."""

    def __init__(self, dim: int, seed: int, hidden: int = 6) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)

        def draw(*shape: int, scale: float = 1.0) -> nn.Parameter:
            values = torch.randn(shape, generator=generator, dtype=torch.float64)
            return nn.Parameter(scale * values)

        self.w1 = draw(hidden, dim)
        self.c = draw(hidden)
        self.b = draw(hidden)
        self.w2 = draw(dim, hidden, scale=1 / math.sqrt(hidden))
        self.a = draw(dim, dim, scale=0.4)

    def forward(self, t: float | Tensor, z: Tensor) -> Tensor:
        return torch.tanh(z @ self.w1.T + t * self.c + self.b) @ self.w2.T + z @ self.a.T


def _points(batch: int, dim: int, seed: int) -> Tensor:
    return randn(batch, dim, seed=seed)


def _trace(field: Field, z: Tensor, *, create_graph: bool = False) -> Tensor:
    """The exact divergence of ``field`` at every sample by ``D`` backward passes: ``(B,)``."""
    with torch.enable_grad():
        point = z if create_graph and z.requires_grad else z.detach().requires_grad_(True)
        out = field(point)
        diagonal = [
            torch.autograd.grad(
                out[:, i].sum(), point, retain_graph=True, create_graph=create_graph
            )[0][:, i]
            for i in range(z.shape[1])
        ]
    return torch.stack(diagonal, dim=1).sum(dim=1)


# ----------------------------------------------------------------------------- divergence


def check_divergence(divergence: Callable[[Field, Tensor], Tensor]) -> None:
    """``divergence(field, z)``: the exact trace in ``D = 1, 2, 3, 5`` (``B = D`` included),
    single samples, and a linear field whose ``z`` already requires grad."""
    for dim, batch, seed in ((1, 7, 11), (2, 7, 12), (5, 7, 13), (3, 3, 14)):
        field = partial(_Field(dim, seed=seed, hidden=4), 0.4)
        z = _points(batch, dim, seed=seed + 100)
        expected = _trace(field, z)
        setting = f"D = {dim}, B = {batch}"
        check_close(divergence(field, z), expected, what=f"the divergence ({setting})", inputs=z)
        alone = torch.cat([divergence(field, z[b : b + 1]) for b in range(batch)])
        check_close(alone, expected, what=f"the divergence of single samples (D = {dim})")
    matrix = randn(4, 4, seed=15)
    z = _points(6, 4, seed=16).requires_grad_(True)
    got = divergence(lambda y: y @ matrix.T, z)
    check_close(got, torch.trace(matrix).expand(6), what="the divergence of z -> A z (tr A)")


# ----------------------------------------------------------------------------- Hutchinson


def _check_unbiased(estimates: Tensor, exact: float, variance: float, what: str) -> None:
    """Mean within 5 standard errors of ``exact``; sample variance within 10 % of ``variance``."""
    count = len(estimates)
    mean = estimates.mean().item()
    measured = estimates.var().item()
    if measured <= (1e-12 * (1 + abs(mean))) ** 2:
        raise GradingCheckError(
            f"{what}: all {count} estimates at the same point are equal ({mean:.6g}); every "
            "sample needs its own ε, drawn from the generator"
        )
    standard_error = math.sqrt(measured / count)
    if not abs(mean - exact) < 5 * standard_error:
        raise GradingCheckError(
            f"{what} is biased: the mean of {count} estimates at one point is {mean:.6g} ± "
            f"{standard_error:.2g} (one standard error), the exact trace is {exact:.6g}"
        )
    if not abs(measured - variance) <= 0.1 * variance:
        raise GradingCheckError(
            f"{what}: the variance of {count} estimates at one point is {measured:.5g}, "
            f"expected {variance:.5g} for this noise"
        )


def _check_statistics(hutchinson_divergence: Callable[..., Tensor]) -> None:
    for dim, seed in ((2, 31), (5, 32)):
        field = partial(_Field(dim, seed=seed), 0.2)
        point = _points(1, dim, seed=seed + 100)
        jacobian = torch.autograd.functional.jacobian(field, point)[0, :, 0, :]
        symmetric = (jacobian + jacobian.T) / 2
        frobenius = (symmetric**2).sum().item()
        variances = {
            "gaussian": 2 * frobenius,
            "rademacher": 2 * (frobenius - (torch.diagonal(symmetric) ** 2).sum().item()),
        }
        many = point.repeat(40_000, 1)
        for noise, variance in variances.items():
            generator = torch.Generator().manual_seed(seed + 200)
            estimates = hutchinson_divergence(field, many, generator, noise)
            if not isinstance(estimates, Tensor) or estimates.shape != (len(many),):
                shape = tuple(estimates.shape) if isinstance(estimates, Tensor) else estimates
                raise GradingCheckError(
                    f"hutchinson_divergence returned {shape} for z of shape {tuple(many.shape)}; "
                    f"expected one estimate per sample, shape ({len(many)},)"
                )
            exact = torch.trace(jacobian).item()
            _check_unbiased(estimates.detach(), exact, variance, f"{noise} Hutchinson, D = {dim}")


def _check_generator(hutchinson_divergence: Callable[..., Tensor]) -> None:
    """The same generator state gives the same estimate, and ε comes from that generator."""
    field = partial(_Field(4, seed=34), 0.6)
    z = _points(6, 4, seed=33)
    for noise in ("gaussian", "rademacher"):
        first = hutchinson_divergence(field, z, torch.Generator().manual_seed(5), noise)
        again = hutchinson_divergence(field, z, torch.Generator().manual_seed(5), noise)
        check_close(again, first, what=f"a second {noise} estimate from the same generator state")
        generator = torch.Generator().manual_seed(6)
        state = generator.get_state()
        other = hutchinson_divergence(field, z, generator, noise)
        if torch.equal(generator.get_state(), state):
            raise GradingCheckError(
                f"hutchinson_divergence ({noise}) left the generator it was given untouched: "
                "draw ε from it (torch.randn(..., generator=generator), torch.randint(..., "
                "generator=generator))"
            )
        if torch.equal(other, first):
            raise GradingCheckError(
                f"two {noise} estimates from generators seeded 5 and 6 are equal: ε must come "
                "from the generator's state"
            )


def _check_exact_cases(hutchinson_divergence: Callable[..., Tensor]) -> None:
    """Rademacher noise is exact for a diagonal Jacobian; unknown noise names raise."""
    for scales in ([0.5, -1.0, 3.0, 0.25], [-2.0]):
        scale = torch.tensor(scales, dtype=torch.float64)
        z = _points(6, len(scales), seed=len(scales))
        diagonal_field = lambda y, s=scale: torch.tanh(y) * s  # noqa: E731
        got = hutchinson_divergence(
            diagonal_field, z, torch.Generator().manual_seed(6), "rademacher"
        )
        check_close(
            got,
            _trace(diagonal_field, z),
            what=f"the Rademacher estimate for a diagonal Jacobian (D = {len(scales)})",
            inputs=z,
        )
    try:
        hutchinson_divergence(diagonal_field, z, torch.Generator().manual_seed(7), "uniform")
    except ValueError:
        return
    except Exception as error:
        raise GradingCheckError(
            f"noise='uniform' raised {type(error).__name__}: {error}; expected a ValueError"
        ) from error
    raise GradingCheckError("noise='uniform' must raise a ValueError")


def check_hutchinson(hutchinson_divergence: Callable[..., Tensor]) -> None:
    """``hutchinson_divergence(field, z, generator, noise)``: unbiased with each noise's
    variance (one ε per sample), reproducible from the generator's state and drawn from it,
    exact for a diagonal Jacobian with Rademacher noise, ``ValueError`` for other names."""
    _check_statistics(hutchinson_divergence)
    _check_generator(hutchinson_divergence)
    _check_exact_cases(hutchinson_divergence)


# ----------------------------------------------------------------------------- fixed-step CNF


def _divergence_of(field: TimeField) -> Callable[[float, Tensor], Tensor]:
    """``div(t, z)``: the exact, differentiable divergence of ``field`` at time ``t``."""
    return lambda t, z: _trace(partial(field, t), z, create_graph=True)


def _solve(
    field: TimeField,
    div: Callable,
    z: Tensor,
    t_start: float,
    t_end: float,
    steps: int,
    method: str,
) -> tuple[Tensor, Tensor]:
    """The assignment's fixed-step scheme for ``(z, ℓ)``: ``(z(t_end), ℓ(t_end))``."""
    h = (t_end - t_start) / steps
    log_det = z.new_zeros(z.shape[0])
    for k in range(steps):
        t = t_start + k * h
        if method == "euler":
            z, log_det = z + h * field(t, z), log_det + h * div(t, z)
            continue
        k1 = field(t, z)
        y2 = z + h / 2 * k1
        k2 = field(t + h / 2, y2)
        y3 = z + h / 2 * k2
        k3 = field(t + h / 2, y3)
        y4 = z + h * k3
        k4 = field(t + h, y4)
        traces = (div(t, z), div(t + h / 2, y2), div(t + h / 2, y3), div(t + h, y4))
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        log_det = log_det + h / 6 * (traces[0] + 2 * traces[1] + 2 * traces[2] + traces[3])
    return z, log_det


CASES = (  # dim, batch, t0, t1, steps, method
    (2, 5, 0.0, 1.0, 7, "rk4"),
    (3, 4, 0.5, 1.25, 5, "euler"),
    (1, 3, -0.3, 0.4, 3, "rk4"),
    (3, 4, 0.5, 1.25, 6, "rk4"),
    (2, 5, 0.0, 1.0, 9, "euler"),
)


def _check_values(fixed_step_cnf: Callable[..., nn.Module]) -> None:
    for index, (dim, batch, t0, t1, steps, method) in enumerate(CASES):
        field = _Field(dim, seed=50 + index)
        div = _divergence_of(field)
        flow = fixed_step_cnf(field, div, t0=t0, t1=t1, steps=steps, method=method)
        setting = f"{method} with {steps} steps on [{t0}, {t1}], D = {dim}"
        x = _points(batch, dim, seed=60 + index)
        with torch.no_grad():
            z_ref, log_det_ref = _solve(field, div, x, t0, t1, steps, method)
            x_ref, log_det_back_ref = _solve(field, div, z_ref, t1, t0, steps, method)
        for direction, start, expected in (
            ("forward", x, (z_ref, log_det_ref)),
            ("inverse", z_ref, (x_ref, log_det_back_ref)),
        ):
            given = start.clone()
            out, log_det = getattr(flow, direction)(given)
            if not torch.equal(given, start):
                raise GradingCheckError(
                    f"{direction} changed its input tensor in place ({setting}): build new "
                    "tensors (z = z + h·k, not z += h·k)"
                )
            if direction == "forward":
                end, scheme = "z(t1)", "from t0 with h = (t1 - t0)/steps, t_k = t0 + k·h"
            else:
                end, scheme = "z(t0)", "from t1 with h = (t0 - t1)/steps < 0, t_k = t1 + k·h"
            check_close(
                out, expected[0], what=f"{direction}'s {end} by {setting} ({scheme})", atol=1e-10
            )
            check_close(
                log_det,
                expected[1],
                what=f"{direction}'s log_det by {setting} (the divergence at the same stage "
                "points and times as the field)",
                atol=1e-10,
            )


def _gradients(
    outputs: tuple[Tensor, Tensor], inputs: list[Tensor], weights: tuple[Tensor, Tensor]
) -> list[Tensor | None]:
    loss = (outputs[0] * weights[0]).sum() + (outputs[1] * weights[1]).sum()
    return list(torch.autograd.grad(loss, inputs, allow_unused=True))


def _check_derivatives(fixed_step_cnf: Callable[..., nn.Module]) -> None:
    """Derivatives of both directions in the input and the field's parameters."""
    for dim, batch, steps, method in ((2, 3, 4, "rk4"), (3, 2, 3, "euler")):
        field = _Field(dim, seed=70 + dim)
        div = _divergence_of(field)
        flow = fixed_step_cnf(field, div, t0=0.0, t1=0.8, steps=steps, method=method)
        setting = f"{method} with {steps} steps on [0, 0.8], D = {dim}"
        weights = (randn(batch, dim, seed=80 + dim), randn(batch, seed=90 + dim))
        parameters = list(field.parameters())
        for direction, (t_start, t_end) in (("forward", (0.0, 0.8)), ("inverse", (0.8, 0.0))):
            start = _points(batch, dim, seed=100 + dim).requires_grad_(True)
            with torch.enable_grad():
                out = getattr(flow, direction)(start)
                if not all(isinstance(o, Tensor) and o.requires_grad for o in out):
                    raise GradingCheckError(
                        f"{direction}'s outputs carry no gradient ({setting}): a CNF is trained "
                        "through its solver, so integrate without torch.no_grad(), .detach() "
                        "or .item()"
                    )
                got = _gradients(out, [start, *parameters], weights)
                reference = _solve(field, div, start, t_start, t_end, steps, method)
                expected = _gradients(reference, [start, *parameters], weights)
            names = ["the input"] + [
                f"the field's parameter {n}" for n, _ in field.named_parameters()
            ]
            for name, found, want in zip(names, got, expected, strict=True):
                if found is None:
                    raise GradingCheckError(
                        f"{direction}'s outputs do not depend on {name} through autograd "
                        f"({setting}): integrate without torch.no_grad() or .detach()"
                    )
                check_close(
                    found,
                    want,
                    what=f"the derivative of {direction}'s outputs in {name} ({setting})",
                )


def check_fixed_step_cnf(fixed_step_cnf: Callable[..., nn.Module]) -> None:
    """``FixedStepCNF(field, div, t0=, t1=, steps=, method=)``: ``forward`` and ``inverse``
    equal the assignment's Euler and RK4 schemes (time-dependent fields, intervals not starting
    at 0, odd step counts), leave their input untouched, and are differentiable in the input
    and in the field's parameters."""
    _check_values(fixed_step_cnf)
    _check_derivatives(fixed_step_cnf)
