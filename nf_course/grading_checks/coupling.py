"""Assignment 04, affine coupling with a mask (``solutions/04_coupling``; book chapter 8): the
student's ``coupling_forward`` and ``coupling_inverse`` against the formulas of the text.

Each function is called with masks that alternate (both parities, odd ``D``) and with masks
that do not (a block split, an irregular one), so code that assumes one pattern is found; the
conditioner has generic weights everywhere, also those that produce ``(s, t)`` at the
conditioning coordinates. The student's direction is paired with the formula's other direction
and goes through every bijector check, derivatives with respect to the conditioner's parameters
included (a log-det computed under ``torch.no_grad`` has the right values and no gradient).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.bijectors.coupling import mlp
from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, check_close, randn

Coupling = Callable[[Tensor, Tensor, nn.Module], tuple[Tensor, Tensor]]

# (mask b, seed): alternating with both parities, a block split, an irregular mask
MASKS = (
    ((1, 0, 1, 0), 1),
    ((0, 1, 0, 1, 0), 2),
    ((1, 1, 1, 0, 0, 0), 3),
    ((0, 1, 1, 0, 1), 4),
)


class Conditioner(nn.Module):
    """``(s, t) = conditioner(y)``, each ``(B, D)``, with ``s = a ⊙ tanh(h)``: the notebook's
    conditioner, float64, with seeded generic weights (none at zero, ``a ≠ 1``)."""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        self.net = mlp(dim, 2 * dim, hidden=12, layers=2)
        self.scale = nn.Parameter(torch.ones(dim))
        perturb_parameters(self, seed=seed, scale=0.5)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        h, t = self.net(y).chunk(2, dim=1)
        return self.scale * torch.tanh(h), t


def formula_forward(x: Tensor, mask: Tensor, conditioner: nn.Module) -> tuple[Tensor, Tensor]:
    """``z = b ⊙ x + (1 - b) ⊙ (x ⊙ e^s + t)`` and ``Σ (1 - b) ⊙ s``, with ``(s, t)`` of
    ``b ⊙ x``."""
    s, t = conditioner(mask * x)
    return mask * x + (1 - mask) * (x * torch.exp(s) + t), ((1 - mask) * s).sum(dim=1)


def formula_inverse(z: Tensor, mask: Tensor, conditioner: nn.Module) -> tuple[Tensor, Tensor]:
    """``x = b ⊙ z + (1 - b) ⊙ (z - t) ⊙ e^{-s}`` and ``-Σ (1 - b) ⊙ s``, with ``(s, t)`` of
    ``b ⊙ z``."""
    s, t = conditioner(mask * z)
    return mask * z + (1 - mask) * (z - t) * torch.exp(-s), -((1 - mask) * s).sum(dim=1)


class Pair(nn.Module):
    """A bijector with ``forward = forward_fn(·, mask, conditioner)`` and
    ``inverse = inverse_fn(·, mask, conditioner)``."""

    def __init__(
        self, forward_fn: Coupling, inverse_fn: Coupling, mask: Tensor, conditioner: nn.Module
    ) -> None:
        super().__init__()
        self.forward_fn, self.inverse_fn = forward_fn, inverse_fn
        self.register_buffer("mask", mask)
        self.conditioner = conditioner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_fn(x, self.mask, self.conditioner)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.inverse_fn(z, self.mask, self.conditioner)


def _values(
    student: Coupling,
    formula: Coupling,
    name: str,
    points: Tensor,
    mask: Tensor,
    conditioner: nn.Module,
) -> None:
    """The student's output and log-det equal the formula's on ``points``."""
    setting = f"mask b = {[int(v) for v in mask.tolist()]}"
    try:
        got = student(points.clone(), mask.clone(), conditioner)
    except Exception as error:
        raise GradingCheckError(
            f"{name}(·, mask, conditioner) with {setting} raised {type(error).__name__}: {error}"
        ) from error
    if not (isinstance(got, tuple | list) and len(got) == 2):
        raise GradingCheckError(f"{name} must return a pair (output, log_det), got {type(got)}")
    with torch.no_grad():
        expected = formula(points, mask, conditioner)
    output = "z" if name == "coupling_forward" else "x"
    check_close(got[0], expected[0], what=f"{output} = {name}(…) with {setting}", inputs=points)
    check_close(got[1], expected[1], what=f"the log_det of {name} with {setting}", inputs=points)


def _check(student: Coupling, name: str) -> None:
    forward = name == "coupling_forward"
    for values, seed in MASKS:
        mask = torch.tensor(values, dtype=torch.float64)
        dim = len(values)
        x = 1.5 * randn(24, dim, seed=seed + 10)
        noise = randn(24, dim, seed=seed + 20)
        conditioner = Conditioner(dim, seed)
        if forward:
            _values(student, formula_forward, name, x, mask, conditioner)
            pair = Pair(student, formula_inverse, mask, conditioner)
        else:
            _values(student, formula_inverse, name, noise, mask, conditioner)
            pair = Pair(formula_forward, student, mask, conditioner)
        check_bijector(pair, x, z=noise, differentiable_inverse=not forward)


def check_coupling_forward(coupling_forward: Coupling) -> None:
    """``coupling_forward(x, mask, conditioner)``: values and log-dets against the formula for
    alternating and other masks, then every bijector check paired with the formula's inverse."""
    _check(coupling_forward, "coupling_forward")


def check_coupling_inverse(coupling_inverse: Coupling) -> None:
    """``coupling_inverse(z, mask, conditioner)``: values and log-dets against the formula, then
    every bijector check paired with the formula's forward, the inverse's derivatives included
    (sampling with gradients differentiates through it)."""
    _check(coupling_inverse, "coupling_inverse")
