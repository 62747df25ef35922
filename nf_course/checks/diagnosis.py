"""Likely causes of failed checks, each a pure function of what was measured.

A cause is named only when the measurements establish it (a flipped sign, a constant factor, a
call that fails on a batch of one); otherwise the message states the facts and no cause."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

BATCH_STATISTICS = (
    "\n  likely cause: the result for one sample depends on the other samples: batch "
    "statistics (BatchNorm in training mode, a mean or std over the batch, ActNorm "
    "initialised again at every call) or a log_det reduced over the batch"
)

RANDOMNESS = (
    "\n  likely cause: randomness inside the map (Dropout in training mode, noise, masks drawn "
    "at each call) or state that changes at every call"
)

STALE_CACHE = (
    "\n  likely cause: a stale cache: a quantity derived from the parameters (an inverse matrix, "
    "a decomposition, a normalized vector) is computed once and not recomputed after the "
    "parameters change"
)

DETACHED = (
    "\n  likely cause: part of the computation is cut from the autograd graph (torch.no_grad, "
    ".detach(), .data, .item(), float(), NumPy), so autograd's derivative is wrong although the "
    "values are right"
)


def close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    """Whether ``|a − b| ≤ atol + rtol·|b|`` everywhere."""
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


def _likely(hint: str) -> str:
    return "\n  likely cause: " + hint


def _image_factor(ratio: float, sample_shape: Sequence[int]) -> str:
    """Name a constant ratio of log-dets that is a count of pixels or channels, or ``""``."""
    channels, height, width = sample_shape
    pixels = height * width
    if abs(ratio * pixels - 1) < 1e-3:
        return (
            f"the factor H·W = {pixels} is missing: a per-channel transformation applied at "
            "every pixel contributes its log-det once per pixel"
        )
    if abs(ratio / pixels - 1) < 1e-3:
        return f"H·W = {pixels} is counted once too often"
    candidates = {
        "W/H": width / height,
        "H/W": height / width,
        "H": height,
        "W": width,
        "1/H": 1 / height,
        "1/W": 1 / width,
        "C": channels,
        "1/C": 1 / channels,
    }
    for label, value in candidates.items():
        if value != 1 and abs(ratio / value - 1) < 1e-3:
            return (
                f"it is {label} = {value:.4g} times the true value: the number of pixels is "
                f"wrong (a per-channel log-det counts once per pixel, H·W = {height}·{width})"
            )
    return ""


def log_det_cause(
    returned: Tensor, expected: Tensor, sample_shape: Sequence[int], tol: float
) -> str:
    """A likely cause for a log-det that disagrees with the brute-force value, or ``""``."""
    loose = max(tol, 1e-3)
    signal_size = expected.abs().max().item()
    if signal_size > loose and close(returned, -expected, loose, 1e-3):
        return _likely(
            "the sign is flipped: the value is the log-det of the other direction "
            "(forward needs log|det ∂f/∂x|, inverse log|det ∂g/∂z| = −log|det ∂f/∂x|)"
        )
    if signal_size > loose and returned.abs().max().item() <= loose:
        return _likely("log_det is zero where the Jacobian's is not: the log-det term is missing")
    if returned.numel() > 1:
        total = expected.sum()
        if close(returned, total.expand_as(returned), loose, 1e-3) and not close(
            expected, total.expand_as(expected), loose, 1e-3
        ):
            return _likely("every sample gets the log-det summed over the whole batch")
    if (expected.abs() > loose).all():
        ratio = returned / expected
        mean = ratio.mean().item()
        constant = (ratio - mean).abs().max().item() < 1e-3 * max(1.0, abs(mean))
        if constant and abs(mean - 1) > 1e-3:
            named = _image_factor(mean, sample_shape) if len(sample_shape) == 3 else ""
            return _likely(
                named
                or f"it is {mean:.4g} times the true value at every sample (a scale, e.g. "
                "log s² = 2·log|s|, or a sum over the wrong dimensions)"
            )
    offset = returned - expected
    if returned.numel() > 1 and (offset - offset.mean()).abs().max().item() <= loose:
        return _likely(
            f"it is off by the same constant {offset.mean().item():.4g} at every sample: a term "
            "that does not depend on the input is wrong or missing"
        )
    return ""


def round_trip_cause(
    x: Tensor, z: Tensor, x_back: Tensor, forward_of_z: Tensor | None, atol: float, rtol: float
) -> str:
    """Why ``inverse(forward(x)) = x_back`` is not ``x``; ``forward_of_z`` is ``forward(z)``."""
    if x_back.shape != x.shape:
        return ""
    scale = atol + rtol * x.abs()
    if (
        z.shape == x_back.shape
        and ((x_back - z).abs() <= scale).all()
        and not ((x - z).abs() <= scale).all()
    ):
        return "\n  likely cause: inverse returned its input unchanged"
    wrong = ((x_back - x).abs() > scale).reshape(x.shape[0], -1).any(dim=0)
    if 0 < int(wrong.sum()) < wrong.numel():
        indices = wrong.nonzero().reshape(-1).tolist()
        shown = ", ".join(map(str, indices[:8])) + (", …" if len(indices) > 8 else "")
        return (
            f"\n  only elements [{shown}] (flattened per sample) are wrong; the others "
            "are recovered: look at how inverse treats those"
        )
    if (
        forward_of_z is not None
        and forward_of_z.shape == x_back.shape
        and close(x_back, forward_of_z, atol, 1e-4)
    ):
        return (
            "\n  inverse(z) equals forward(z) here: the two directions apply the same "
            "transformation, so one of them has the other's formula (a transposed or inverted "
            "matrix, a flipped sign, a swapped scale)"
        )
    return ""


def sum_cause(forward_ld: Tensor, inverse_ld: Tensor, atol: float) -> str:
    """Why forward and inverse log-dets do not cancel, or ``""``."""
    atol = max(atol, 1e-3)
    if forward_ld.abs().max() > atol and close(inverse_ld, forward_ld, atol, 1e-3):
        return _likely(
            "inverse returns the same log-det as forward; it must return its negative "
            "(log|det ∂g/∂z| = −log|det ∂f/∂x|)"
        )
    return ""


def sub_batch_failure_cause(message: str, size: int) -> str:
    """Why a call that ran on the full batch raised on ``size`` of its samples."""
    if "more than 1 value per channel" in message:
        return _likely("BatchNorm in training mode needs several samples: batch statistics")
    if size == 1:
        return _likely(
            "an operation that depends on the batch size: .squeeze() without a dimension also "
            "drops a batch dimension of size 1 (use .squeeze(dim) or .reshape), or a shape "
            "written for the full batch"
        )
    return _likely("a shape written for the full batch size instead of x.shape[0]")


def finite_cause(label: str, kind: str) -> str:
    """Why an output is NaN or infinite, where the label establishes it."""
    if "log_det" in label and kind == "NaN":
        return _likely(
            "the log of a negative number (a determinant or a scale without the absolute "
            "value): use torch.linalg.slogdet or torch.log(torch.abs(·))"
        )
    return ""


def short(message: str, limit: int = 160) -> str:
    """The first line of an error message, without torch's hints, at most ``limit`` characters."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = first.split(" Hint:")[0].split(": [torch.")[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def autograd_failure_cause(message: str, mutations: dict[str, float]) -> str:
    """Why autograd failed on the student's graph, from the facts at hand."""
    if mutations:
        methods = " and ".join(sorted(mutations))
        return _likely(f"{methods} modified its input in place (see input_unchanged)")
    if "modified by an inplace operation" in message:
        return _likely(
            "a tensor needed for the gradient was modified in place (x *= s, x[:, i] = …, "
            ".add_()); compute a new tensor instead"
        )
    if "backward through the graph a second time" in message:
        return _likely("a tensor computed once (in __init__ or a cache) is reused across calls")
    return ""
