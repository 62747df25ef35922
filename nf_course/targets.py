"""The energies U1-U4 of Rezende and Mohamed (2015) as reverse-KL targets: the energies, their
restriction to a box with a smooth envelope for training (:class:`EnergyTarget`), normalizers
by Simpson quadrature and a Monte Carlo estimate of the reverse KL.

Chapter: ``book/05_planar_sylvester.md``, section "Fitting the energies U1-U4" (the reverse KL
itself is in ``book/03_fitting_flows.md``); tests: ``tests/test_targets.py``; benchmark:
``benchmarks/planar_energies.py``; the trained planar flows: :mod:`nf_course.pretrained`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from nf_course.common import BOX, Bounds, validate_batch
from nf_course.core import Flow

__all__ = [
    "BOX",
    "DEFAULT_TAU",
    "ENERGY_TARGETS",
    "Bounds",
    "EnergyTarget",
    "KLEstimate",
    "box_envelope",
    "energy_u1",
    "energy_u2",
    "energy_u3",
    "energy_u4",
    "get_energy_target",
    "log_partition",
    "reverse_kl_estimate",
]

DEFAULT_TAU = 0.01
"""Width ``τ`` of the envelope's Gaussian wall outside the box (:func:`box_envelope`).

The wall adds about ``τ √(π/2) ∮ e^{-U} dl`` (over the box's edge) to ``Z_box``; ``τ = 0.01``
keeps ``log Z - log Z_box = KL(π_box ‖ π)`` below 0.005 nats on all four targets (0.003 for U2
and U3, 0.004 for U4), under half the 0.01-nat accuracy the course asks of its best flow, while
the wall's gradient ``dist(z, box)/τ²`` stays finite (a wall twice as soft would already cost
0.008 nats on U4).
"""

_ENVELOPE_CUTOFF = 12.0
"""The envelope's tails are integrated up to this many ``τ`` outside the box (``e^{-72}``)."""


def _points(z: object, where: str) -> Tensor:
    return validate_batch(z, (2,), where=where, name="z")


def _gaussian_log_kernel(x: Tensor, scale: float) -> Tensor:
    """``-½ (x / scale)²``, elementwise."""
    return -0.5 * (x / scale).square()


def _w1(z1: Tensor) -> Tensor:
    """``w1 = sin(2π z1 / 4)``."""
    return torch.sin(2 * math.pi * z1 / 4)


def _w2(z1: Tensor) -> Tensor:
    """``w2 = 3 exp(-½ ((z1 - 1)/0.6)²)``."""
    return 3 * torch.exp(_gaussian_log_kernel(z1 - 1, 0.6))


def _w3(z1: Tensor) -> Tensor:
    """``w3 = 3 σ((z1 - 1)/0.3)``."""
    return 3 * torch.sigmoid((z1 - 1) / 0.3)


def _neg_logsumexp(first: Tensor, second: Tensor) -> Tensor:
    """``-log(e^first + e^second)``, elementwise, computed stably."""
    return -torch.logsumexp(torch.stack([first, second], dim=-1), dim=-1)


def energy_u1(z: Tensor) -> Tensor:
    """U1, a ring of radius 2 with two modes at ``z1 = ±2``: ``(B, 2) -> (B,)``.

    ``U1 = ½ ((‖z‖ - 2)/0.4)² - log(exp(-½ ((z1 - 2)/0.6)²) + exp(-½ ((z1 + 2)/0.6)²))``
    (Rezende and Mohamed 2015, Table 1), the logarithm of the sum by ``logsumexp``.
    """
    z = _points(z, "energy_u1")
    z1 = z[:, 0]
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=1) - 2) / 0.4).square()
    return ring + _neg_logsumexp(
        _gaussian_log_kernel(z1 - 2, 0.6), _gaussian_log_kernel(z1 + 2, 0.6)
    )


def energy_u2(z: Tensor) -> Tensor:
    """U2, a sine-shaped ridge ``z2 ≈ sin(π z1 / 2)``: ``(B, 2) -> (B,)``.

    ``U2 = ½ ((z2 - w1)/0.4)²`` with ``w1 = sin(2π z1 / 4)`` (Rezende and Mohamed 2015).
    """
    z = _points(z, "energy_u2")
    return 0.5 * ((z[:, 1] - _w1(z[:, 0])) / 0.4).square()


def energy_u3(z: Tensor) -> Tensor:
    """U3, the sine ridge and a copy bent down by a bump around ``z1 = 1``: ``(B, 2) -> (B,)``.

    ``U3 = -log(exp(-½ ((z2 - w1)/0.35)²) + exp(-½ ((z2 - w1 + w2)/0.35)²))`` with
    ``w2 = 3 exp(-½ ((z1 - 1)/0.6)²)`` (Rezende and Mohamed 2015), by ``logsumexp``.
    """
    z = _points(z, "energy_u3")
    z1, z2 = z[:, 0], z[:, 1]
    offset = z2 - _w1(z1)
    return _neg_logsumexp(
        _gaussian_log_kernel(offset, 0.35), _gaussian_log_kernel(offset + _w2(z1), 0.35)
    )


def energy_u4(z: Tensor) -> Tensor:
    """U4, the sine ridge and a copy shifted down by a sigmoid step: ``(B, 2) -> (B,)``.

    ``U4 = -log(exp(-½ ((z2 - w1)/0.4)²) + exp(-½ ((z2 - w1 + w3)/0.35)²))`` with
    ``w3 = 3 σ((z1 - 1)/0.3)`` (Rezende and Mohamed 2015), by ``logsumexp``.
    """
    z = _points(z, "energy_u4")
    z1, z2 = z[:, 0], z[:, 1]
    offset = z2 - _w1(z1)
    return _neg_logsumexp(
        _gaussian_log_kernel(offset, 0.4), _gaussian_log_kernel(offset + _w3(z1), 0.35)
    )


def _check_bounds(bounds: Bounds, where: str) -> Bounds:
    try:
        (low1, high1), (low2, high2) = bounds
        checked = ((float(low1), float(high1)), (float(low2), float(high2)))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where}: bounds must be ((z1_low, z1_high), (z2_low, z2_high)), got {bounds!r}"
        ) from error
    if not all(math.isfinite(low) and math.isfinite(high) and low < high for low, high in checked):
        raise ValueError(f"{where}: bounds must be finite with low < high, got {bounds!r}")
    return checked


def box_envelope(z: Tensor, bounds: Bounds = BOX, tau: float = DEFAULT_TAU) -> Tensor:
    """The envelope energy ``E(z) = dist(z, box)² / (2τ²)``, zero inside: ``(B, 2) -> (B,)``.

    The squared distance is computed without a square root, so the gradient ``(z - proj(z))/τ²``
    is finite everywhere, including on the box's edges.
    """
    z = _points(z, "box_envelope")
    (low1, high1), (low2, high2) = _check_bounds(bounds, "box_envelope")
    if not tau > 0:
        raise ValueError(f"box_envelope: tau must be positive, got {tau}")
    low = z.new_tensor([low1, low2])
    high = z.new_tensor([high1, high2])
    excess = torch.relu(low - z) + torch.relu(z - high)
    return 0.5 * excess.square().sum(dim=1) / tau**2


def _check_resolution(resolution: int | tuple[int, int], where: str) -> tuple[int, int]:
    """The number of Simpson intervals on each axis, checked to be even ints >= 2."""
    resolutions = resolution if isinstance(resolution, tuple) else (resolution, resolution)
    if len(resolutions) != 2 or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 2 and size % 2 == 0
        for size in resolutions
    ):
        raise ValueError(
            f"{where}: resolution must be an even int >= 2 (Simpson's rule) or a pair of them, "
            f"got {resolution!r}"
        )
    return resolutions


def _simpson_log_weights(low: float, high: float, resolution: int) -> tuple[Tensor, Tensor]:
    """Nodes ``(resolution + 1,)`` and log-weights of composite Simpson's rule on ``[low, high]``.

    The weights are ``h/3 · (1, 4, 2, 4, …, 2, 4, 1)`` with ``h = (high - low) / resolution``.
    """
    nodes = torch.linspace(low, high, resolution + 1, dtype=torch.float64)
    weights = torch.full((resolution + 1,), 2.0, dtype=torch.float64)
    weights[1::2] = 4.0
    weights[0] = weights[-1] = 1.0
    return nodes, torch.log(weights * (high - low) / (3 * resolution))


def _simpson_grid(bounds: Bounds, resolutions: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Points ``(M, 2)`` and log-weights ``(M,)`` of the product Simpson rule on a rectangle."""
    (low1, high1), (low2, high2) = bounds
    nodes1, log_weights1 = _simpson_log_weights(low1, high1, resolutions[0])
    nodes2, log_weights2 = _simpson_log_weights(low2, high2, resolutions[1])
    grid1, grid2 = torch.meshgrid(nodes1, nodes2, indexing="ij")
    points = torch.stack([grid1.reshape(-1), grid2.reshape(-1)], dim=1)
    return points, (log_weights1[:, None] + log_weights2[None, :]).reshape(-1)


def _log_integral(
    energy_fn: Callable[[Tensor], Tensor],
    pieces: list[tuple[Bounds, tuple[int, int]]],
    where: str,
) -> float:
    """``log Σ_pieces ∫ exp(-energy_fn)`` by Simpson's rule, with one call of ``energy_fn``."""
    grids = [_simpson_grid(bounds, resolutions) for bounds, resolutions in pieces]
    points = torch.cat([points for points, _ in grids])
    log_weights = torch.cat([log_weights for _, log_weights in grids])
    with torch.no_grad():
        energy = energy_fn(points)
    if not isinstance(energy, Tensor) or energy.shape != (points.shape[0],):
        raise ValueError(
            f"{where}: energy_fn must map (M, 2) to (M,), got "
            f"{getattr(energy, 'shape', type(energy).__name__)} for M = {points.shape[0]}"
        )
    if torch.isnan(energy).any():
        raise ValueError(f"{where}: energy_fn returned NaN on the grid")
    return torch.logsumexp(log_weights - energy.to(torch.float64), dim=0).item()


def log_partition(
    energy_fn: Callable[[Tensor], Tensor],
    bounds: Bounds = BOX,
    resolution: int | tuple[int, int] = 512,
) -> float:
    """``log ∫ exp(-energy_fn(z)) dz`` over the rectangle ``bounds`` by Simpson's rule.

    Composite Simpson on a ``(n1 + 1) × (n2 + 1)`` grid, evaluated in float64 as a ``logsumexp``
    of ``log w_i + log w_j - energy``, so large energies do not underflow. The error is
    ``O(h⁴)`` for an integrand smooth on the rectangle: comparing a resolution with twice it
    bounds it (the finer value's error is about 1/15 of their difference).

    Args:
        energy_fn: ``U``, mapping float64 points ``(M, 2)`` to ``(M,)``.
        bounds: ``((z1_low, z1_high), (z2_low, z2_high))``.
        resolution: number of intervals ``n1 = n2`` per axis, or a pair ``(n1, n2)``; even.

    Raises:
        ValueError: bad ``bounds`` or ``resolution``, an ``energy_fn`` returning the wrong shape,
            or a NaN energy.
    """
    bounds = _check_bounds(bounds, "log_partition")
    resolutions = _check_resolution(resolution, "log_partition")
    return _log_integral(energy_fn, [(bounds, resolutions)], "log_partition")


def _frame_tiles(
    bounds: Bounds, margin: float, resolution: int
) -> list[tuple[Bounds, tuple[int, int]]]:
    """The eight rectangles of a frame ``margin`` wide around the box, with Simpson resolutions.

    The envelope ``E`` is smooth on each of them (not across their edges), as Simpson's rule
    needs. Along the box's edges they keep ``resolution``; across the thin frame a sixteenth of
    it, rounded to an even number, suffices (32 intervals over ``12 τ`` by default).
    """
    across = max(2, 2 * (resolution // 32))
    segments = [
        [((low - margin, low), across), ((low, high), resolution), ((high, high + margin), across)]
        for low, high in bounds
    ]
    return [
        ((first, second), (first_resolution, second_resolution))
        for index1, (first, first_resolution) in enumerate(segments[0])
        for index2, (second, second_resolution) in enumerate(segments[1])
        if (index1, index2) != (1, 1)
    ]


class EnergyTarget:
    """A 2D target ``π ∝ exp(-U)`` restricted to a box, with a smooth envelope for training.

    U2-U4 do not grow with ``|z1|``, so ``exp(-U)`` has infinite mass on the plane: every
    target is restricted to a box, ``[-4, 4]²`` (the paper's figure) by default, where
    ``log Z_box`` is 1.878, 2.082, 2.642 and 2.685 nats for U1-U4 (U1 is normalizable on the
    plane too, with all but ``1e-8`` of its mass in the box). A hard box would give
    ``log π = -∞`` to every flow sample outside it, so training uses ``exp(-U - E) / Z`` with
    the smooth envelope ``E`` (:func:`box_envelope`, :data:`DEFAULT_TAU`); its ``log Z`` is
    1.878, 2.085, 2.645 and 2.689 nats. Both normalizers come from Simpson quadrature in
    float64 (:func:`log_partition`): at the default 512 intervals per axis, halving the
    resolution moves them by less than ``1e-6`` nats, so their error is below ``1e-7``.

    Args:
        name: short name, e.g. ``"U1"``.
        energy_fn: ``U``, mapping ``(B, 2)`` to ``(B,)`` differentiably.
        bounds: the box, ``((z1_low, z1_high), (z2_low, z2_high))``; ``[-4, 4]²`` by default.
        tau: width of the envelope's wall outside the box.
        resolution: Simpson intervals per axis of the box for the normalizers (even).

    Example:
        >>> target = get_energy_target("U2")
        >>> loss = flow.reverse_kl(target.log_prob_unnormalized, 512)  # doctest: +SKIP
        >>> kl, stderr = reverse_kl_estimate(flow, target, 100_000)     # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        energy_fn: Callable[[Tensor], Tensor],
        *,
        bounds: Bounds = BOX,
        tau: float = DEFAULT_TAU,
        resolution: int = 512,
    ) -> None:
        if isinstance(resolution, tuple):
            raise ValueError(f"EnergyTarget: resolution must be one even int, got {resolution!r}")
        if not tau > 0:
            raise ValueError(f"EnergyTarget: tau must be positive, got {tau}")
        self.name = name
        self.energy_fn = energy_fn
        self.bounds = _check_bounds(bounds, "EnergyTarget")
        self.tau = float(tau)
        self.resolution = _check_resolution(resolution, "EnergyTarget")[0]

    def energy(self, z: Tensor) -> Tensor:
        """The energy ``U(z)``: ``(B, 2) -> (B,)``, in ``z``'s dtype and on its device."""
        return self.energy_fn(z)

    def envelope(self, z: Tensor) -> Tensor:
        """The envelope ``E(z) = dist(z, box)² / (2τ²)``: ``(B, 2) -> (B,)``."""
        return box_envelope(z, self.bounds, self.tau)

    def training_energy(self, z: Tensor) -> Tensor:
        """``U(z) + E(z)``, the energy of the training target: ``(B, 2) -> (B,)``."""
        return self.energy(z) + self.envelope(z)

    def log_prob_unnormalized(self, z: Tensor) -> Tensor:
        """``log π̃(z) = -U(z) - E(z)``: ``(B, 2) -> (B,)``; pass it to ``Flow.reverse_kl``."""
        return -self.training_energy(z)

    def log_prob(self, z: Tensor) -> Tensor:
        """The normalized training density ``-U(z) - E(z) - log Z``: ``(B, 2) -> (B,)``."""
        return self.log_prob_unnormalized(z) - self.log_Z

    def log_prob_box(self, z: Tensor) -> Tensor:
        """The density restricted to the box, ``-U - log Z_box`` inside, ``-inf`` outside.

        ``(B, 2) -> (B,)``; for plots of the paper's figure. Training uses :meth:`log_prob`.
        """
        log_prob = -self.energy(z) - self.log_Z_box
        (low1, high1), (low2, high2) = self.bounds
        inside = (z[:, 0] >= low1) & (z[:, 0] <= high1) & (z[:, 1] >= low2) & (z[:, 1] <= high2)
        return log_prob.masked_fill(~inside, -math.inf)

    @cached_property
    def log_Z_box(self) -> float:
        """``log ∫_box exp(-U)``, by Simpson quadrature (computed once, then cached)."""
        return log_partition(self.energy, self.bounds, self.resolution)

    @cached_property
    def log_Z(self) -> float:
        """``log ∫ exp(-U - E)`` over the plane, the normalizer of the training target.

        ``Z_box`` (``E = 0`` inside the box) plus Simpson quadrature on each piece of a frame
        ``12 τ`` wide around the box (beyond it the integrand is below ``e^{-72}`` of its value
        on the edge), so that the integrand is smooth on every piece. Computed once, then cached.
        """
        frame = _frame_tiles(self.bounds, _ENVELOPE_CUTOFF * self.tau, self.resolution)
        log_frame = _log_integral(self.training_energy, frame, "EnergyTarget.log_Z")
        return float(np.logaddexp(self.log_Z_box, log_frame))

    def __repr__(self) -> str:
        return f"EnergyTarget({self.name!r}, bounds={self.bounds}, tau={self.tau})"


ENERGY_TARGETS: dict[str, EnergyTarget] = {
    "U1": EnergyTarget("U1", energy_u1),
    "U2": EnergyTarget("U2", energy_u2),
    "U3": EnergyTarget("U3", energy_u3),
    "U4": EnergyTarget("U4", energy_u4),
}
"""The four targets of Rezende and Mohamed (2015) on ``[-4, 4]²`` with the default envelope."""


def get_energy_target(name: str) -> EnergyTarget:
    """The registered target called ``name`` (``"U1"`` to ``"U4"``, case-insensitive).

    Raises:
        ValueError: ``name`` is not a registered target; the message lists the known ones.
    """
    key = str(name).upper()
    if key not in ENERGY_TARGETS:
        raise ValueError(
            f"get_energy_target: unknown target {name!r}; known targets: "
            f"{', '.join(ENERGY_TARGETS)}"
        )
    return ENERGY_TARGETS[key]


class KLEstimate(NamedTuple):
    """A Monte Carlo estimate and its standard error, in nats."""

    value: float
    stderr: float


def reverse_kl_estimate(
    flow: Flow,
    target: EnergyTarget,
    n: int,
    *,
    generator: torch.Generator | None = None,
) -> KLEstimate:
    """Estimate ``KL(q ‖ π) = E_q[log q + U + E] + log Z`` from ``n`` samples of the flow ``q``.

    The target ``π`` is ``target``'s training density (with the envelope), so the result is
    ``≥ 0`` up to Monte Carlo error. No gradients are recorded; train with
    ``flow.reverse_kl(target.log_prob_unnormalized, n)``, which differs by ``log Z``.

    Args:
        flow: a flow on 2D points with ``sample_and_log_prob``.
        target: the target, e.g. ``get_energy_target("U3")``.
        n: number of samples, at least 2 (for the standard error).
        generator: a ``torch.Generator`` for reproducible draws.

    Returns:
        ``KLEstimate(value, stderr)``: the sample mean of ``log q - log π`` and its standard
        error ``std / √n``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"reverse_kl_estimate: n must be an int >= 2, got {n!r}")
    with torch.no_grad():
        z, log_q = flow.sample_and_log_prob(n, generator=generator)
        terms = (log_q - target.log_prob(z)).to(torch.float64)
    return KLEstimate(terms.mean().item(), (terms.std() / math.sqrt(n)).item())
