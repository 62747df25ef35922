"""Assignment 05, MADE and the masked autoregressive flow (``solutions/05_autoregressive``; book
chapter 7): the input degrees, the masks, and the two directions of a MAF layer, each graded
against nf_course's :class:`~nf_course.bijectors.MADE` and :class:`~nf_course.bijectors.MAF`.

The orderings are chosen so that no wrong answer is right by accident: none is its own inverse
(``argsort(order) == order`` would hide a mix-up of positions and coordinates), none is the
natural one, and the hidden layers vary in number (one to three) and width."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nf_course.bijectors import MADE, MAF
from nf_course.checks import brute_force_jacobian, check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, call_student, check_close, randn

Order = str | Sequence[int]

# Orderings from first to last coordinate.
DEGREE_ORDERS = ([3, 0, 4, 1, 2], [2, 4, 3, 0, 6, 1, 5], [1, 2, 3, 4, 5, 6, 7, 8, 0])
# (dimension, hidden widths, ordering, seed)
MASK_CASES = {
    "autoregressive": (
        (5, (7, 9), "random", 1),
        (6, (8,), "random", 2),
        (4, (5, 5, 5), "random", 3),
        (5, (6, 4), [3, 0, 4, 1, 2], 4),
    ),
    "connections": (
        (5, (6, 8), [3, 0, 4, 1, 2], 4),
        (4, (3,), [1, 3, 0, 2], 5),
        (3, (4, 2, 5), [2, 0, 1], 6),
    ),
    "reference": (
        (5, (7, 9), "random", 6),
        (5, (6, 8), [3, 0, 4, 1, 2], 0),
        (4, (5,), "random", 7),
        (6, (7, 5, 9), [4, 1, 5, 0, 3, 2], 8),
    ),
}
# (dimension, ordering, seed) of the MAF layers; no ordering is its own inverse.
MAF_CASES = ((5, [3, 0, 4, 1, 2], 11), (6, "random", 12), (4, [1, 2, 3, 0], 13))
BATCH = 16  # never equal to a dimension: a sum over the wrong axis changes the shape


def random_maf(dim: int, order: Order, *, seed: int, hidden: Sequence[int] = (16, 16)) -> MAF:
    """nf_course's MAF with generic weights, the same on every run: MADE's initialization draws
    from the global generator, so it runs under a fork of it seeded with ``seed`` (the caller's
    generator is left as it was); the weights are then perturbed with seeded noise."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        maf = MAF(dim, hidden=hidden, order=order, seed=seed)
    return perturb_parameters(maf, seed=seed)


def _made(dim: int, hidden: Sequence[int], order: Order, seed: int) -> MADE:
    """nf_course's MADE, for its degrees and masks, built without touching the global generator."""
    with torch.random.fork_rng(devices=[]):
        return MADE(dim, hidden=hidden, outputs_per_dim=1, order=order, seed=seed)


class OneDirection(nn.Module):
    """A bijector with the ``forward`` of ``forward_from`` and the ``inverse`` of ``inverse_from``
    (to check one direction written by a student against the reference's other direction)."""

    def __init__(self, forward_from: nn.Module, inverse_from: nn.Module) -> None:
        super().__init__()
        self.forward_from = forward_from
        self.inverse_from = inverse_from

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_from.forward(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.inverse_from.inverse(z)


def made_passes(layer: nn.Module, method: str, y: Tensor) -> int:
    """How many times ``layer.<method>(y)`` evaluates ``layer.made``."""
    calls = []
    handle = layer.made.register_forward_hook(lambda *args: calls.append(1))
    try:
        getattr(layer, method)(y)
    finally:
        handle.remove()
    return len(calls)


def hidden_degrees(dim: int, widths: Sequence[int]) -> list[Tensor]:
    """Degrees ``1, 2, …, D-1, 1, 2, …`` of the units of each hidden layer (every degree is
    present in a layer of at least ``D - 1`` units)."""
    top = max(dim - 1, 1)
    return [1 + torch.arange(width) % top for width in widths]


# ----------------------------------------------------------------------------- degrees


def check_input_degrees(input_degrees: Callable[[Tensor], object]) -> None:
    """``input_degrees(order)`` equals MADE's input degrees (position in the ordering + 1)."""
    for order in map(torch.tensor, DEGREE_ORDERS):
        expected = _made(len(order), (), order.tolist(), seed=0).degrees[0]
        what = f"input_degrees({order.tolist()})"
        got = _integer_vector(call_student(what, input_degrees, order.clone()), what)
        if not torch.equal(got, expected):
            raise GradingCheckError(
                f"input_degrees({order.tolist()}) returned {got.tolist()}, expected "
                f"{expected.tolist()} (coordinate order[k] is in position k, so its degree is "
                "k + 1)"
            )


def _integer_vector(value: object, what: str) -> Tensor:
    try:
        tensor = torch.as_tensor(value)
    except Exception as exc:
        raise GradingCheckError(
            f"{what} returned a {type(value).__name__}; expected a long tensor"
        ) from exc
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise GradingCheckError(f"{what} returned a tensor of {tensor.dtype}; degrees are integers")
    return tensor.long()


# ----------------------------------------------------------------------------- masks


def _student_masks(made_masks: Callable[[list[Tensor]], object], degrees: list[Tensor]) -> list:
    """The masks for ``degrees``, as boolean tensors of the right number and shapes."""
    dim = len(degrees[0])
    widths = [len(d) for d in degrees[1:]]
    what = f"made_masks for D = {dim} and hidden widths {widths} ({len(degrees)} degree tensors)"
    masks = call_student(what, made_masks, [d.clone() for d in degrees])
    shapes = [(len(later), len(earlier)) for earlier, later in pairwise(degrees)]
    shapes.append((dim, len(degrees[-1])))
    if len(masks) != len(shapes):
        raise GradingCheckError(
            f"made_masks returned {len(masks)} masks for D = {dim} and hidden widths {widths}; "
            f"expected {len(shapes)} (one per hidden layer and one for the output layer)"
        )
    result = []
    for index, (mask, shape) in enumerate(zip(masks, shapes, strict=True)):
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != shape:
            raise GradingCheckError(
                f"mask {index} has shape {tuple(mask.shape)}, expected {shape} = (out_features, "
                f"in_features) (D = {dim}, hidden widths {widths})"
            )
        result.append(mask.bool())
    return result


def _masked_network(masks: list[Tensor], seed: int) -> Callable[[Tensor], Tensor]:
    """An MLP ``(B, D) -> (B, D)`` whose layer ℓ has the weight ``W_ℓ ⊙ M_ℓ``; seeded weights."""
    weights = [
        randn(*mask.shape, seed=seed + index) / math.sqrt(mask.shape[1]) * mask
        for index, mask in enumerate(masks)
    ]
    biases = [0.1 * randn(mask.shape[0], seed=seed + 100 + i) for i, mask in enumerate(masks)]

    def network(x: Tensor) -> Tensor:
        h = x
        for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
            h = F.linear(h, weight, bias)
            if index < len(weights) - 1:
                h = F.silu(h)
        return h

    return network


def _mask_dependencies(masks: list[Tensor], dim: int, seed: int) -> Tensor:
    """``depends[i, j]``: output ``i`` of an MLP with these masks and random weights reads
    ``x_j`` (a nonzero Jacobian entry at one of 8 random points)."""
    jacobian = brute_force_jacobian(_masked_network(masks, seed), randn(8, dim, seed=seed))
    return (jacobian.abs() > 1e-12).any(dim=0)


def check_masks(
    made_masks: Callable[[list[Tensor]], object],
    degrees: list[Tensor],
    *,
    seed: int = 0,
    autoregressive: bool = True,
    connections: bool = True,
) -> None:
    """Shapes of ``made_masks(degrees)``, and through the Jacobian of an MLP with random weights:
    no output reads its own input or a later one (``autoregressive``), and every input that
    comes before output ``i`` reaches it (``connections``)."""
    masks = _student_masks(made_masks, degrees)
    depends = _mask_dependencies(masks, len(degrees[0]), seed)
    before = degrees[0][None, :] < degrees[0][:, None]  # before[i, j]: x_j comes before x_i
    widths = [len(d) for d in degrees[1:]]
    setting = f"(input degrees {degrees[0].tolist()}, hidden widths {widths})"
    wrong = (depends & ~before).nonzero().tolist()
    if autoregressive and wrong:
        raise GradingCheckError(
            f"not autoregressive: output i depends on x_j although x_j does not come before "
            f"x_i, for (i, j) in {wrong} {setting}; an output must never see its own input or "
            "a later one"
        )
    missing = (before & ~depends).nonzero().tolist()
    if connections and missing:
        raise GradingCheckError(
            f"missing connections: output i does not depend on x_j although x_j comes before "
            f"x_i, for (i, j) in {missing} {setting}: the masks cut a path that the degrees allow"
        )


def check_masks_autoregressive(made_masks: Callable[[list[Tensor]], object]) -> None:
    """Random orderings and random hidden degrees (as in the MADE paper): autoregressive."""
    for dim, hidden, order, seed in MASK_CASES["autoregressive"]:
        reference = _made(dim, hidden, order, seed)
        check_masks(made_masks, reference.degrees, seed=seed, connections=False)


def check_masks_connections(made_masks: Callable[[list[Tensor]], object]) -> None:
    """Every hidden degree present in every layer: no allowed connection may be cut."""
    for dim, hidden, order, seed in MASK_CASES["connections"]:
        reference = _made(dim, hidden, order, seed)
        check_masks(made_masks, reference.degrees, seed=seed, autoregressive=False)


def check_masks_match_made(made_masks: Callable[[list[Tensor]], object]) -> None:
    """The masks equal those of nf_course's MADE, entry by entry."""
    for dim, hidden, order, seed in MASK_CASES["reference"]:
        reference = _made(dim, hidden, order, seed)
        masks = _student_masks(made_masks, reference.degrees)
        for index, (mask, layer) in enumerate(zip(masks, reference.layers, strict=True)):
            differ = (mask != layer.mask).nonzero().tolist()
            if not differ:
                continue
            row, column = differ[0]
            output = index == len(masks) - 1
            rule = (
                "an output reads a unit of the last hidden layer when m_out > m_in, strictly"
                if output
                else "a hidden unit reads a unit of the layer below when m_out ≥ m_in"
            )
            m_out = (reference.degrees[0] if output else reference.degrees[index + 1])[row]
            m_in = reference.degrees[index][column]
            raise GradingCheckError(
                f"mask {index} ({'the output layer' if output else f'hidden layer {index + 1}'})"
                f" differs from MADE's in {len(differ)} entries (D = {dim}, hidden widths "
                f"{list(hidden)}); first at row {row}, column {column}: got "
                f"{bool(mask[row, column])}, expected {bool(layer.mask[row, column])} for "
                f"m_out = {int(m_out)} and m_in = {int(m_in)} ({rule})"
            )


# ----------------------------------------------------------------------------- MAF


class StudentDirection(nn.Module):
    """The MAF ``reference`` with a student's ``maf_forward`` or ``maf_inverse`` (functions with
    the assignment's signatures, called with the reference's conditioner) in place of its own."""

    def __init__(
        self,
        reference: MAF,
        *,
        maf_forward: Callable[..., tuple[Tensor, Tensor]] | None = None,
        maf_inverse: Callable[..., tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.reference = reference
        self.maf_forward = maf_forward
        self.maf_inverse = maf_inverse

    @property
    def made(self) -> MADE:
        return self.reference.made

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.maf_forward is None:
            return self.reference.forward(x)
        return self.maf_forward(x, self.reference.conditioner)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.maf_inverse is None:
            return self.reference.inverse(z)
        return self.maf_inverse(z, self.reference.conditioner, self.made.order.tolist())


def _setting(dim: int, reference: MAF) -> str:
    return f"D = {dim}, ordering {reference.made.order.tolist()}"


def check_maf_forward(maf_forward: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """The student's forward with the reference's inverse: every bijector check, ``z`` and the
    log-det equal the reference's, and one MADE pass."""
    for dim, order, seed in MAF_CASES:
        reference = random_maf(dim, order, seed=seed)
        layer = StudentDirection(reference, maf_forward=maf_forward)
        x = 1.5 * randn(BATCH, dim, seed=seed + 100)
        check_bijector(layer, x)
        z, log_det = layer.forward(x)
        z_ref, log_det_ref = reference.forward(x)
        setting = _setting(dim, reference)
        check_close(z, z_ref.detach(), what=f"z = forward(x) ({setting})", inputs=x)
        check_close(log_det, log_det_ref.detach(), what=f"forward log_det ({setting})", inputs=x)
        passes = made_passes(layer, "forward", x)
        if passes != 1:
            raise GradingCheckError(
                f"forward evaluated the MADE {passes} times ({setting}); one pass gives every "
                "mu_i and alpha_i at once"
            )


def check_maf_inverse(maf_inverse: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """The reference's forward with the student's inverse: every bijector check, derivatives of
    the inverse included (the text asks for a loop autograd can differentiate), and ``x`` and
    the log-det equal the reference's."""
    for dim, order, seed in MAF_CASES:
        reference = random_maf(dim, order, seed=seed)
        layer = StudentDirection(reference, maf_inverse=maf_inverse)
        x = 1.5 * randn(BATCH, dim, seed=seed + 100)
        noise = randn(BATCH, dim, seed=seed + 200)
        setting = _setting(dim, reference)
        sampled, _ = layer.inverse(noise.clone().requires_grad_(True))
        if not isinstance(sampled, Tensor) or not sampled.requires_grad:
            raise GradingCheckError(
                f"x = inverse(z) is cut from the autograd graph ({setting}): the loop must let "
                "gradients through (no torch.no_grad, .detach() or .item() on the way)"
            )
        check_bijector(layer, x, z=noise, differentiable_inverse=True)
        x_back, log_det = layer.inverse(noise)
        x_ref, log_det_ref = reference.inverse(noise)
        check_close(x_back, x_ref.detach(), what=f"x = inverse(z) ({setting})", inputs=noise)
        check_close(
            log_det, log_det_ref.detach(), what=f"inverse log_det ({setting})", inputs=noise
        )
