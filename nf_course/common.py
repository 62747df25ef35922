"""What the whole package shares: argument validators with one wording for every error, the
numeric tolerance of the iterative inverses, and the constants several modules use.

Every public entry point checks its arguments with these, so that a wrong argument always gets
the same kind of message: where (``Class.method``), which argument, what was expected, what came.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

#: Axis-aligned bounds ``((x_low, x_high), (y_low, y_high))`` of a 2D region.
Bounds = tuple[tuple[float, float], tuple[float, float]]

#: The square ``[-4, 4]²`` on which the 2D densities are drawn and the energies U1–U4 are
#: normalized (as in the figure of Rezende and Mohamed, 2015).
BOX: Bounds = ((-4.0, 4.0), (-4.0, 4.0))


def validate_batch(
    x: object, event_shape: Sequence[int] | None, *, where: str, name: str = "x"
) -> Tensor:
    """Check that ``x`` is a floating batch ``(B, *event_shape)`` and return it.

    Args:
        x: the value to check.
        event_shape: the shape of one sample, or ``None`` to accept any non-empty one.
        where: the method doing the check, named in the error (e.g. ``"Flow.log_prob"``).
        name: the argument's name in the error.

    Raises:
        TypeError: ``x`` is not a tensor, or not of a floating dtype.
        ValueError: ``x`` has no batch dimension or the wrong event shape.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{where}: {name} must have a floating dtype (float32 or float64), got {x.dtype}; "
            f"convert it with {name}.float() or {name}.double()"
        )
    if event_shape is None:
        if x.dim() < 2:
            raise ValueError(
                f"{where}: {name} must be a batch of shape (B, ...) with at least 2 dimensions, "
                f"got shape {tuple(x.shape)}; for a single sample use {name}.unsqueeze(0)"
            )
        return x
    expected = tuple(event_shape)
    if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{where}: {name} must have shape (B, {', '.join(map(str, expected))}), "
            f"got {tuple(x.shape)}"
        )
    return x


def validate_images(
    x: object, channels: int, *, where: str, name: str = "x", hint: str = ""
) -> Tensor:
    """Check that ``x`` is a floating batch of images ``(B, channels, H, W)`` and return it.

    ``hint`` is appended to the error (e.g. which class to use for vectors).
    """
    x = validate_batch(x, None, where=where, name=name)
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{where}: {name} must be a batch of images (B, {channels}, H, W), "
            f"got shape {tuple(x.shape)}{hint}"
        )
    return x


def positive_int(value: object, name: str, where: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an ``int`` of at least ``minimum``, else raise a clear error.

    Raises:
        TypeError: ``value`` is not an ``int`` (``bool`` included).
        ValueError: ``value`` is smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be at least {minimum}, got {value}")
    return value


def _number(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def positive_float(value: object, name: str, where: str) -> float:
    """Return ``value`` as a float if it is a positive finite number, else raise a clear error."""
    number = _number(value, name, where)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{where}: {name} must be a positive number, got {value!r}")
    return number


def in_interval(
    value: object, name: str, where: str, low: float, high: float, *, closed_low: bool = False
) -> float:
    """Return ``value`` as a float if it lies in ``(low, high)`` (``[low, high)`` with
    ``closed_low``), else raise a clear error."""
    number = _number(value, name, where)
    above = number >= low if closed_low else number > low
    if not (above and number < high):
        interval = f"{'[' if closed_low else '('}{low:g}, {high:g})"
        raise ValueError(f"{where}: {name} must be a number in {interval}, got {value!r}")
    return number


def choice(value: object, options: Sequence[str], name: str, where: str) -> str:
    """Return ``value`` if it is one of the strings ``options``, else raise a clear error."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a string, got {type(value).__name__}")
    if value not in options:
        raise ValueError(
            f"{where}: unknown {name} {value!r}; choose one of {', '.join(map(repr, options))}"
        )
    return value


def boolean(value: object, name: str, where: str) -> bool:
    """Return ``value`` if it is a ``bool`` (a switch such as ``adjoint`` or ``split_prior``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be a bool, got {type(value).__name__}")
    return value


def zero_or_one(value: object, name: str, where: str) -> int:
    """Return ``value`` if it is the int 0 or 1 (e.g. which half of a coupling moves)."""
    if isinstance(value, bool) or value not in (0, 1):
        raise ValueError(f"{where}: {name} must be 0 or 1, got {value!r}")
    return int(value)


def default_tolerance(dtype: torch.dtype) -> float:
    """The relative tolerance of the numeric inverses: ``max(1e-12, 8 eps(dtype))``."""
    return max(1e-12, 8 * torch.finfo(dtype).eps)
