"""Rational-quadratic spline coupling: :class:`SplineCoupling`, a coupling layer whose
elementwise law is a monotonic spline, and the spline itself, :func:`rational_quadratic_spline`.

Chapter: ``book/08_coupling_flows.md``, section "Affine against spline couplings on the
checkerboard" (Durkan et al. 2019, beyond the lectures); the masks and the conditioner are those
of :mod:`nf_course.bijectors.coupling`; tests: ``tests/test_spline.py``; no assignment;
benchmarks: ``benchmarks/kl_2d.py``, ``benchmarks/peer_step.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nf_course.bijectors.coupling import _VectorCoupling
from nf_course.common import positive_int

__all__ = ["SplineCoupling", "rational_quadratic_spline"]

#: Smallest bin width and height, as fractions of the interval's length ``2B``.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
#: Smallest derivative at an interior knot.
MIN_DERIVATIVE = 1e-3


def _knots(logits: Tensor, bound: float, minimum: float) -> Tensor:
    """Knots ``(..., K + 1)`` from ``-bound`` to ``bound`` for bin logits ``(..., K)``.

    Bin sizes are ``2·bound·(minimum + (1 - K·minimum)·softmax(logits))``; the end knots are set
    exactly to ``±bound`` so that no rounding of the cumulative sum leaves a gap at the tails.
    """
    bins = logits.shape[-1]
    fractions = minimum + (1 - bins * minimum) * torch.softmax(logits, dim=-1)
    knots = F.pad(torch.cumsum(fractions, dim=-1), (1, 0), value=0.0)
    knots = 2 * bound * knots - bound
    knots[..., 0] = -bound
    knots[..., -1] = bound
    return knots


def _bin_index(values: Tensor, knots: Tensor) -> Tensor:
    """Bin ``(...,)`` in ``0 … K-1`` of each value ``(...,)`` among the knots ``(..., K + 1)``.

    The number of interior knots at or below the value: ``O(K)`` comparisons per element.
    """
    return (values[..., None] >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)


def rational_quadratic_spline(
    inputs: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    *,
    inverse: bool = False,
    bound: float = 4.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    r"""Elementwise monotonic rational-quadratic spline on ``[-bound, bound]``, identity outside.

    The parameters are unconstrained (what a network outputs) and are constrained here: widths
    and heights through a softmax with a minimum bin size, the interior derivatives
    :math:`\delta_k` through a shifted softplus with a minimum, so that all-zero parameters
    give uniform bins and unit derivatives, i.e. the identity map; the minimums keep every bin
    and slope away from zero, so the inverse stays well conditioned. The boundary derivatives
    are 1, matching the linear (identity) tails, so the map is :math:`C^1` on the real line.

    The formulas (Durkan et al. 2019; the chapter does not derive them). A point lies in bin
    ``k``, the number of interior knots at or below it (``O(K)`` comparisons). With the bin's
    knots ``(x_k, y_k)``, width ``w``, height ``h``, slope ``s = h / w``, knot derivatives
    ``δ_k, δ_{k+1}``, ``Δ = δ_{k+1} + δ_k - 2s`` and ``ξ = (x - x_k) / w ∈ [0, 1]``::

        y     = y_k + h [s ξ² + δ_k ξ(1 - ξ)] / [s + Δ ξ(1 - ξ)]
        dy/dx = s² [δ_{k+1} ξ² + 2s ξ(1 - ξ) + δ_k (1 - ξ)²] / [s + Δ ξ(1 - ξ)]²

    ``dy/dx > 0`` whenever ``s`` and the ``δ``'s are positive. Uniform bins with unit
    derivatives give ``y = x``. The inverse clears the denominator: with ``d = y - y_k``,
    ``ξ`` solves ``a ξ² + b ξ + c = 0`` with ``a = h (s - δ_k) + d Δ``, ``b = h δ_k - d Δ``
    and ``c = -s d``, and the root in ``[0, 1]`` is taken as ``ξ = 2c / (-b - √(b² - 4ac))``,
    which, unlike ``(-b + √·) / 2a``, never divides by a vanishing ``a`` nor subtracts two
    nearly equal numbers (``b > 0`` near the root and ``c ≤ 0``); then ``x = x_k + w ξ``.

    Args:
        inputs: points ``(...,)``: ``x`` for the spline, ``y`` when ``inverse``.
        widths: width logits ``(..., K)``.
        heights: height logits ``(..., K)``.
        derivatives: derivative pre-activations at the ``K - 1`` interior knots, ``(..., K-1)``.
        inverse: evaluate the inverse spline (closed-form root of a quadratic) instead.
        bound: half-length ``B > 0`` of the interval ``[-B, B]`` the spline acts on.
        min_bin_width: smallest bin width, as a fraction of ``2B``; ``K·min < 1``.
        min_bin_height: smallest bin height, likewise.
        min_derivative: smallest interior derivative.

    Returns:
        ``(outputs, log_derivative)``, both ``(...,)``: the spline (or its inverse) at
        ``inputs`` and the log of its derivative there (0 in the tails), so that for the inverse
        ``log_derivative = -log(dy/dx)`` at the returned ``x``.

    Raises:
        ValueError: mismatched shapes, fewer than 2 bins, ``bound ≤ 0``, or minimums that do
            not fit ``K`` bins.
    """
    bins = widths.shape[-1]
    if bins < 2:
        raise ValueError(f"rational_quadratic_spline: needs at least 2 bins, got {bins}")
    if not bound > 0:
        raise ValueError(f"rational_quadratic_spline: bound must be positive, got {bound}")
    if heights.shape != widths.shape or derivatives.shape != (*widths.shape[:-1], bins - 1):
        raise ValueError(
            "rational_quadratic_spline: widths and heights must have shape (..., K) and "
            f"derivatives (..., K - 1); got {tuple(widths.shape)}, {tuple(heights.shape)} and "
            f"{tuple(derivatives.shape)}"
        )
    if tuple(widths.shape[:-1]) != tuple(inputs.shape):
        raise ValueError(
            f"rational_quadratic_spline: inputs of shape {tuple(inputs.shape)} need parameters "
            f"of shape {(*inputs.shape, 'K')}, got widths of shape {tuple(widths.shape)}"
        )
    if bins * max(min_bin_width, min_bin_height) >= 1:
        raise ValueError(
            f"rational_quadratic_spline: {bins} bins of minimum size "
            f"{max(min_bin_width, min_bin_height)} do not fit in the interval"
        )

    x_knots = _knots(widths, bound, min_bin_width)
    y_knots = _knots(heights, bound, min_bin_height)
    shift = math.log(math.expm1(1 - min_derivative))
    delta = min_derivative + F.softplus(derivatives + shift)
    delta = F.pad(delta, (1, 1), value=1.0)

    inside = (inputs >= -bound) & (inputs <= bound)
    # Tails are computed on clamped values and discarded, so no NaN reaches the gradients.
    t = inputs.clamp(-bound, bound)
    k = _bin_index(t, y_knots if inverse else x_knots)
    x_k = x_knots.gather(-1, k).squeeze(-1)
    w = x_knots.gather(-1, k + 1).squeeze(-1) - x_k
    y_k = y_knots.gather(-1, k).squeeze(-1)
    h = y_knots.gather(-1, k + 1).squeeze(-1) - y_k
    delta_k = delta.gather(-1, k).squeeze(-1)
    delta_k1 = delta.gather(-1, k + 1).squeeze(-1)
    s = h / w
    Delta = delta_k1 + delta_k - 2 * s

    if inverse:
        dy = t - y_k
        a = h * (s - delta_k) + dy * Delta
        b = h * delta_k - dy * Delta
        c = -s * dy
        xi = 2 * c / (-b - torch.sqrt(b.square() - 4 * a * c))
        outputs = x_k + w * xi
    else:
        xi = (t - x_k) / w
        outputs = y_k + h * (s * xi.square() + delta_k * xi * (1 - xi)) / (
            s + Delta * xi * (1 - xi)
        )

    numerator = s.square() * (
        delta_k1 * xi.square() + 2 * s * xi * (1 - xi) + delta_k * (1 - xi).square()
    )
    denominator = s + Delta * xi * (1 - xi)
    log_derivative = torch.log(numerator) - 2 * torch.log(denominator)
    if inverse:
        log_derivative = -log_derivative
    outputs = torch.where(inside, outputs, inputs)
    log_derivative = torch.where(inside, log_derivative, torch.zeros_like(log_derivative))
    return outputs, log_derivative


class SplineCoupling(_VectorCoupling):
    r"""Coupling with a rational-quadratic spline law: :math:`z_A = x_A,\ z_B = g_\theta(x_B)`.

    Mask and ``parity`` as in :class:`~nf_course.bijectors.coupling.AffineCoupling`
    (alternating; even coordinates condition when ``parity=0``). Each moved coordinate goes
    through its own :func:`rational_quadratic_spline` with ``K = bins`` bins on
    ``[-bound, bound]`` and identity tails; the ``3K - 1`` spline parameters per moved
    coordinate come from the conditioner :math:`\theta = \mathrm{net}(x_A)`.

    Initialization: the conditioner's output layer is zero, so a fresh layer has uniform bins
    and unit derivatives, and the rational quadratic is then exactly the identity
    (log-determinant 0), up to rounding of the knots.

    Cost: one conditioner pass in each direction, as for any coupling, plus ``O(K)`` per moved
    element for the bin search and ``O(1)`` for the formula or the quadratic's root.

    Args:
        dim: dimension ``D ≥ 2`` of a sample.
        bins: number of bins ``K ≥ 2``.
        bound: half-length ``B > 0`` of the interval where the spline acts; inputs outside it
            pass unchanged. Data should mostly lie inside (e.g. standardized data, ``B = 4``).
        hidden: width of the conditioner's hidden layers.
        layers: number of hidden layers of the conditioner.
        parity: 0 or 1, which half of the alternating mask is transformed.

    Attributes:
        mask: ``(D,)`` bool, ``True`` on the conditioning coordinates ``A``.
        net: the conditioner, ``(B, |A|) -> (B, |B|·(3K - 1))``.
    """

    def __init__(
        self,
        dim: int,
        *,
        bins: int = 8,
        bound: float = 4.0,
        hidden: int = 64,
        layers: int = 2,
        parity: int = 0,
    ) -> None:
        where = type(self).__name__
        bins = positive_int(bins, "bins", where, minimum=2)
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise TypeError(f"{where}: bound must be a number, got {type(bound).__name__}")
        if not (bound > 0 and math.isfinite(bound)):
            raise ValueError(f"{where}: bound must be positive and finite, got {bound}")
        super().__init__(dim, 3 * bins - 1, hidden, layers, parity)
        self.bins = bins
        self.bound = float(bound)

    def transform(self, y_B: Tensor, y_A: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        """Spline ``y_B (B, |B|)`` given ``y_A (B, |A|)``: ``(out (B, |B|), log_det (B,))``;
        ``forward`` and ``inverse`` are the coupling's (:mod:`nf_course.bijectors.coupling`)."""
        params = self.net(y_A).reshape(*y_B.shape, 3 * self.bins - 1)
        widths, heights, derivatives = params.split([self.bins, self.bins, self.bins - 1], dim=-1)
        out, log_derivative = rational_quadratic_spline(
            y_B, widths, heights, derivatives, inverse=inverse, bound=self.bound
        )
        return out, log_derivative.sum(dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.bins}, bound={self.bound}"
