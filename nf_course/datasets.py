"""Data sets of the course: seven 2D toy distributions with seeded samplers and exact
log-densities (:class:`Toy2D`, :func:`toy`), and the 8x8 digits with their dequantization and
bits per dimension (:func:`digits`, :func:`dequantize`, :func:`bits_per_dim`).

Chapters: the toy data in ``book/06_invertible_residual.md`` to ``book/11_ffjord.md`` (the
samplers of FFJORD's code, Grathwohl et al. 2019), the digits in ``book/09_glow.md``; tests:
``tests/test_datasets.py``; assignment: ``solutions/04_coupling`` (toy data); benchmarks:
``benchmarks/kl_2d.py`` (toy data), ``benchmarks/digits_bpd.py`` and
``benchmarks/digits_baselines.py`` (digits).
"""

from __future__ import annotations

import functools
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from nf_course.common import BOX, Bounds, positive_int, validate_batch

__all__ = [
    "DIGITS_LEVELS",
    "DIGITS_SHAPE",
    "DIGITS_SPLITS",
    "TOY_DATASETS",
    "Checkerboard",
    "EightGaussians",
    "Moons",
    "Pinwheel",
    "Rings",
    "Toy2D",
    "TwoSpirals",
    "bits_per_dim",
    "dequantize",
    "digits",
    "toy",
]


_LOG_2PI = math.log(2 * math.pi)
_CHUNK_ELEMENTS = 2**21  # float64 elements per intermediate of Toy2D.log_prob (16 MB)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _default_generator(generator: torch.Generator | None, where: str) -> torch.Generator:
    """Return ``generator``, or a fresh CPU generator seeded with 0 when it is ``None``."""
    if generator is None:
        return torch.Generator().manual_seed(0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{where}: generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator


def _count(n: object, where: str) -> int:
    """Check that ``n`` is a positive integer and return it."""
    try:
        count = operator.index(n)
    except TypeError:
        count = None
    if count is None or isinstance(n, bool):
        raise TypeError(f"{where}: n must be an int, got {type(n).__name__}")
    if count <= 0:
        raise ValueError(f"{where}: n must be a positive number of samples, got {n!r}")
    return count


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``U[0, 1)`` draws in float64 on the generator's device."""
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)


def _normal(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """``N(0, 1)`` draws in float64 on the generator's device."""
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)


def _choice(n: int, classes: int, generator: torch.Generator) -> Tensor:
    """``n`` class labels, uniform on ``{0, …, classes - 1}``, as an int64 tensor ``(n,)``."""
    return torch.randint(classes, (n,), generator=generator, device=generator.device)


def _unit(angle: Tensor) -> Tensor:
    """``(…,) -> (…, 2)``: the unit vectors ``(cos t, sin t)``."""
    return torch.stack((torch.cos(angle), torch.sin(angle)), dim=-1)


@functools.lru_cache(maxsize=16)
def _gauss_legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes on ``[0, 1]`` and the logs of their weights (which sum to 1).

    SciPy's ``roots_legendre`` takes milliseconds for hundreds of nodes, where NumPy's
    ``leggauss`` (an eigenvalue problem) takes seconds. Imported here: SciPy is only needed by
    the densities that use quadrature.
    """
    from scipy.special import roots_legendre

    points, weights = roots_legendre(nodes)
    return (points + 1) / 2, np.log(weights / 2)


def _quadrature(nodes: int, low: float, high: float, like: Tensor) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes ``(nodes,)`` on ``[low, high]`` and log-weights summing to 1."""
    points, log_weights = _gauss_legendre(nodes)
    points = torch.as_tensor(points, dtype=like.dtype, device=like.device)
    log_weights = torch.as_tensor(log_weights, dtype=like.dtype, device=like.device)
    return low + (high - low) * points, log_weights


def _log_ring(radius: Tensor, ring: float, sigma: float) -> Tensor:
    """Log-density ``(B,)`` of ``ring · u(t) + σε`` at points of norm ``radius`` (B,).

    The angular average of an isotropic Gaussian around the circle,
    ``exp(-(ρ² + r²)/2σ²) I₀(ρr/σ²) / (2πσ²)``, written with ``i0e(z) = e^{-z} I₀(z)`` as
    ``-(ρ - r)²/2σ² + log i0e(ρr/σ²) - log 2πσ²`` (no overflow for any ρ).
    """
    variance = sigma**2
    log_bessel = torch.log(torch.special.i0e(radius * ring / variance))
    return log_bessel - (radius - ring).square() / (2 * variance) - _LOG_2PI - math.log(variance)


def _log_diff_ndtr(high: Tensor, width: float) -> Tensor:
    """``log(Φ(a) - Φ(a - w))`` for ``a = high`` (any shape) and a fixed width ``w > 0``.

    Stable in both tails: where ``a - w/2 > 0`` it uses ``Φ(a) - Φ(a - w) = Φ(w - a) - Φ(-a)``,
    so the larger argument is always ``≤ w/2`` and ``Φ(lo)/Φ(hi) ≤ Φ(-w/2)/Φ(w/2) < 1``.
    """
    reflect = high - width / 2 > 0
    hi = torch.where(reflect, width - high, high)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(hi - width)
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi))


def _half_square_gap(offset: Tensor, width: float) -> Tensor:
    """``g²/2``, with ``g`` the distance from ``a = offset`` to ``[0, w]`` (``w = width``).

    ``-g²/2`` bounds ``log(Φ(a) - Φ(a - w))`` from above, since ``Φ(-g) ≤ e^{-g²/2}``.
    """
    gap = torch.clamp(torch.abs(offset - width / 2) - width / 2, min=0)
    return 0.5 * gap.square()


def _bisect(
    is_positive: Callable[[Tensor], Tensor], left: Tensor, right: Tensor, left_positive: Tensor
) -> Tensor:
    """Sign changes ``(N,)`` of a function inside the brackets ``[left, right]`` (each ``(N,)``).

    ``is_positive(s)`` says where the function is ``> 0``; ``left_positive`` is its value at
    ``left`` and the opposite of its value at ``right``. 60 halvings bring a bracket of
    width up to 2⁸ down to float64 resolution.
    """
    for _ in range(60):
        middle = (left + right) / 2
        same_as_left = is_positive(middle) == left_positive
        left = torch.where(same_as_left, middle, left)
        right = torch.where(same_as_left, right, middle)
    return (left + right) / 2


def _logsumexp_by_group(values: Tensor, groups: Tensor, size: int) -> Tensor:
    """``log Σ_{i: groups[i] = g} exp(values[i])`` for ``g < size``: ``(N,), (N,) -> (size,)``."""
    peak = torch.full((size,), -math.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(0, groups, values, reduce="amax")
    shifted = torch.exp(values - peak[groups])
    total = torch.zeros_like(peak).index_add(0, groups, shifted)
    return peak + torch.log(total)


# --------------------------------------------------------------------------------------------
# 2D toy distributions
# --------------------------------------------------------------------------------------------


class Toy2D(ABC):
    """A 2D toy distribution: a seeded sampler, its exact log-density and its entropy.

    The samplers follow ``lib/toy_data.py`` of FFJORD (Grathwohl et al. 2019), so that
    negative log-likelihoods compare with the literature, and the exact log-density lets a fit
    report the forward KL itself. They differ from FFJORD's code only in how a finite batch is
    drawn, not in the distribution: FFJORD splits a batch into equal counts per component and
    spaces the angles of ``moons``, ``rings`` and ``circles`` evenly, while here every point is
    drawn independently (component, then a uniform angle); FFJORD's ``pinwheel`` returns
    ``5 * (n // 5)`` points and its ``2spirals`` and ``checkerboard`` use NumPy's global
    generator, while ``sample(n)`` returns exactly ``n`` points from the generator it is given.

    Attributes:
        name: the FFJORD name of the distribution (a key of :data:`TOY_DATASETS`).
        entropy: the reference entropy :math:`H(\\pi)` in nats, so that a fit reports
            ``KL(π ‖ p_θ) = test NLL - entropy``; rounded to two decimals (``checkerboard`` is
            exactly ``log 32``), which can shift a reported KL by up to 0.005 nats. To three
            decimals (``-∫ p log p`` on a grid of step 0.04): moons 2.394, 8gaussians 2.832,
            pinwheel 2.318, 2spirals 2.645, rings 2.623, circles 3.268.
        bounds: a plotting box ``((x_min, x_max), (y_min, y_max))`` (FFJORD's figures use
            ``[-4, 4]²``); it holds nearly all, not necessarily all, of the mass.

    Subclasses implement :meth:`_sample` and :meth:`_log_prob` in float64; the public
    :meth:`sample` and :meth:`log_prob` check their arguments and convert dtypes.
    """

    def __init__(self, name: str, entropy: float, bounds: Bounds = BOX):
        self.name = name
        self.entropy = float(entropy)
        self.bounds = bounds

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """Draw ``n`` independent samples, a tensor ``(n, 2)``.

        Args:
            n: number of samples, a positive int.
            generator: the ``torch.Generator`` all randomness comes from; the global RNG is
                never touched. ``None`` means a fresh generator seeded with 0, so that a plain
                ``sample(n)`` always returns the same points: pass your own generator (and
                keep passing the same one) to get fresh batches during training.
            dtype: floating dtype of the result; the points are drawn in float64 and rounded,
                so the same generator state gives the same points in every dtype.

        Returns:
            A tensor ``(n, 2)`` on the generator's device.
        """
        where = f"Toy2D({self.name!r}).sample"
        count = _count(n, where)
        generator = _default_generator(generator, where)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"{where}: dtype must be a floating torch.dtype, got {dtype!r}")
        return self._sample(count, generator).to(dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """The true log-density at the points ``x (B, 2)``, a tensor ``(B,)``.

        Computed in float64 whatever the dtype of ``x`` and returned in the dtype and on the
        device of ``x``. The result carries no gradient (this is a fixed reference density,
        evaluated partly by root finding and quadrature). Points outside the support get
        ``-inf`` (only ``checkerboard`` has a bounded support).

        Raises:
            TypeError: ``x`` is not a floating tensor.
            ValueError: ``x`` is not of shape ``(B, 2)`` or has non-finite entries.
        """
        where = f"Toy2D({self.name!r}).log_prob"
        validate_batch(x, (2,), where=where)
        if not torch.isfinite(x).all():
            raise ValueError(f"{where}: x has non-finite entries (nan or inf)")
        with torch.no_grad():
            points = x.detach().to(torch.float64)
            # Chunks bound the memory of the (points × quadrature nodes) intermediates.
            chunk = max(1, _CHUNK_ELEMENTS // self._work_per_point())
            parts = [self._log_prob(part) for part in points.split(chunk)]
            return torch.cat(parts).to(x.dtype)

    def _work_per_point(self) -> int:
        """Size of the largest intermediate per point of :meth:`_log_prob` (for chunking)."""
        return 8

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` float64 samples ``(n, 2)`` on the generator's device."""

    @abstractmethod
    def _log_prob(self, x: Tensor) -> Tensor:
        """Float64 log-density: ``(B, 2) -> (B,)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, entropy={self.entropy})"


class EightGaussians(Toy2D):
    """Eight Gaussians of std ``0.5/1.414`` centred at ``4 u(kπ/4) / 1.414`` (FFJORD)."""

    SCALE = 4.0
    STD = 0.5
    SHRINK = 1.414  # FFJORD divides by this literal, not by √2

    def __init__(self) -> None:
        super().__init__("8gaussians", 2.83)

    def _centers(self, like: Tensor) -> Tensor:
        """The eight centres ``(8, 2)`` in the final coordinates."""
        angles = torch.arange(8, dtype=torch.float64, device=like.device) * (math.pi / 4)
        return _unit(angles) * (self.SCALE / self.SHRINK)

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        noise = _normal((n, 2), generator) * (self.STD / self.SHRINK)
        component = _choice(n, 8, generator)
        return self._centers(noise)[component] + noise

    def _log_prob(self, x: Tensor) -> Tensor:
        variance = (self.STD / self.SHRINK) ** 2
        squared = (x[:, None, :] - self._centers(x)).square().sum(dim=-1)
        log_mix = torch.logsumexp(-squared / (2 * variance), dim=1) - math.log(8)
        return log_mix - _LOG_2PI - math.log(variance)


class Rings(Toy2D):
    """Equally weighted circles of the given radii, uniform angle, Gaussian noise ``sigma``.

    FFJORD's ``rings`` is ``Rings("rings", (3, 2.25, 1.5, 0.75), 0.08, …)`` and its
    ``circles`` (``make_circles(factor=0.5, noise=0.08)`` times 3) is
    ``Rings("circles", (3, 1.5), 0.24, …)``.
    """

    def __init__(self, name: str, radii: tuple[float, ...], sigma: float, entropy: float):
        super().__init__(name, entropy)
        self.radii = tuple(float(r) for r in radii)
        self.sigma = float(sigma)

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        radii = torch.tensor(self.radii, dtype=torch.float64, device=generator.device)
        ring = radii[_choice(n, len(self.radii), generator)]
        angle = 2 * math.pi * _uniform((n,), generator)
        return ring[:, None] * _unit(angle) + self.sigma * _normal((n, 2), generator)

    def _log_prob(self, x: Tensor) -> Tensor:
        radius = torch.linalg.vector_norm(x, dim=1)
        per_ring = torch.stack([_log_ring(radius, r, self.sigma) for r in self.radii], dim=1)
        return torch.logsumexp(per_ring, dim=1) - math.log(len(self.radii))


class Checkerboard(Toy2D):
    """Uniform on the 8 squares of side 2 of ``[-4, 4)²`` with ``⌊x/2⌋ + ⌊y/2⌋`` even."""

    def __init__(self) -> None:
        super().__init__("checkerboard", math.log(32))

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        x1 = 4 * _uniform((n,), generator) - 2
        x2 = _uniform((n,), generator) - 2 * _choice(n, 2, generator)
        x2 = x2 + torch.remainder(torch.floor(x1), 2)
        return 2 * torch.stack((x1, x2), dim=1)

    def _log_prob(self, x: Tensor) -> Tensor:
        cells = torch.floor(x / 2)
        inside = ((x >= -4) & (x < 4)).all(dim=1)
        on_board = inside & (torch.remainder(cells.sum(dim=1), 2) == 0)
        log_density = torch.full_like(x[:, 0], -math.log(32))
        return torch.where(on_board, log_density, torch.full_like(log_density, -math.inf))


class Moons(Toy2D):
    """Two interleaved half circles of radius 2 with Gaussian noise 0.2 (FFJORD's ``moons``).

    scikit-learn's ``make_moons(noise=0.1)`` mapped by ``x ↦ 2x + (-1, -0.2)``: the arcs
    ``(-1, -0.2) + 2 u(t)`` and ``(1, 0.8) + 2 u(t + π)``, ``u(t) = (cos t, sin t)``,
    ``t ~ U[0, π]``, half of the points each. The density averages a Gaussian over each arc
    (:meth:`_log_arc`, Gauss-Legendre quadrature in ``t``).

    Args:
        nodes: Gauss-Legendre nodes of the integral over the angle of each half circle.
            The integrand is a von Mises bump of width ``σ/√(2ρ)`` (about 0.1 rad near the
            data); the default is accurate far below 1e-3 nats (checked in the tests).
    """

    RADIUS = 2.0
    SIGMA = 0.2
    # (centre, first angle) of each half circle; the angle runs over [first, first + π].
    ARCS = (((-1.0, -0.2), 0.0), ((1.0, 0.8), math.pi))

    def __init__(self, *, nodes: int = 128) -> None:
        super().__init__("moons", 2.39)
        self.nodes = positive_int(nodes, "nodes", "Moons", minimum=2)

    def _work_per_point(self) -> int:
        return self.nodes

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        arc = _choice(n, 2, generator)
        centers = torch.tensor([c for c, _ in self.ARCS], dtype=torch.float64)
        starts = torch.tensor([s for _, s in self.ARCS], dtype=torch.float64)
        centers, starts = centers.to(generator.device), starts.to(generator.device)
        angle = starts[arc] + math.pi * _uniform((n,), generator)
        noise = self.SIGMA * _normal((n, 2), generator)
        return centers[arc] + self.RADIUS * _unit(angle) + noise

    def _log_prob(self, x: Tensor) -> Tensor:
        per_arc = [self._log_arc(x, center, start) for center, start in self.ARCS]
        return torch.logsumexp(torch.stack(per_arc, dim=1), dim=1) - math.log(2)

    def _log_arc(self, x: Tensor, center: tuple[float, float], start: float) -> Tensor:
        """``log (1/π) ∫ N(x; c + R u(t), σ²) dt`` over ``t ∈ [start, start + π]``: ``(B,)``.

        Expanding the square, the exponent is ``(2R d·u(t) - |d|² - R²) / 2σ²`` with
        ``d = x - c``; only ``d·u(t)`` depends on the node.
        """
        offset = x - torch.tensor(center, dtype=x.dtype, device=x.device)
        angles, log_weights = _quadrature(self.nodes, start, start + math.pi, x)
        variance = self.SIGMA**2
        projection = offset @ _unit(angles).T  # (B, nodes)
        log_kernel = self.RADIUS * projection / variance + log_weights
        squared = offset.square().sum(dim=1) + self.RADIUS**2
        log_norm = _LOG_2PI + math.log(variance)
        return torch.logsumexp(log_kernel, dim=1) - squared / (2 * variance) - log_norm


class TwoSpirals(Toy2D):
    """Two interleaved spirals, ``±d/3`` plus Gaussian noise 0.1 (FFJORD's ``2spirals``).

    ``n = 3π √U`` (FFJORD's ``sqrt(U) * 540 * 2π / 360``), so ``p(n) = 2n / (3π)²`` on
    ``[0, 3π]``; ``d = (-n cos n + U₁/2, n sin n + U₂/2)`` and each sign has probability ½.
    Given ``n``, each coordinate is a uniform box of width ``1/6`` convolved with the noise;
    the integral over ``n`` is done by Gauss-Legendre quadrature (:meth:`_log_branch`).

    Args:
        nodes: Gauss-Legendre nodes of the integral over the spiral parameter
            ``n ∈ [0, 3π]``; the kernel varies on the scale ``σ/|c'(n)| ≈ 0.03`` at the outer
            end, and the default is accurate far below 1e-3 nats (checked in the tests).
    """

    TURN = 3 * math.pi  # 540 degrees
    BOX = 0.5 / 3  # side of the uniform offset, after the division by 3
    SIGMA = 0.1
    CUTOFF = 40.0  # nats: nodes this far below the best one are not evaluated exactly

    def __init__(self, *, nodes: int = 512) -> None:
        super().__init__("2spirals", 2.65)
        self.nodes = positive_int(nodes, "nodes", "TwoSpirals", minimum=2)

    def _work_per_point(self) -> int:
        return self.nodes

    def _curve(self, t: Tensor) -> Tensor:
        """``(…,) -> (…, 2)``: the spiral ``(-t cos t, t sin t) / 3`` at parameter ``n = t``
        (the corner of the uniform box)."""
        return torch.stack((-t * torch.cos(t), t * torch.sin(t)), dim=-1) / 3

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        t = self.TURN * torch.sqrt(_uniform((n,), generator))
        box = self.BOX * _uniform((n, 2), generator)
        sign = 1 - 2 * _choice(n, 2, generator).to(torch.float64)
        noise = self.SIGMA * _normal((n, 2), generator)
        return sign[:, None] * (self._curve(t) + box) + noise

    def _log_prob(self, x: Tensor) -> Tensor:
        per_branch = torch.stack((self._log_branch(x), self._log_branch(-x)), dim=1)
        return torch.logsumexp(per_branch, dim=1) - math.log(2)

    def _log_branch(self, x: Tensor) -> Tensor:
        """Log-density ``(B,)`` of the ``+`` spiral, ``∫ p(n) Π_i k(x_i - c_i(n)) dn``.

        ``k(v) = [Φ(v/σ) - Φ((v - h)/σ)] / h`` is the density of ``U[0, h) + N(0, σ²)``.
        Its costly exact value is computed only at the nodes that can matter: with ``g`` the
        distance (in units of σ) from ``v/σ`` to ``[0, h/σ]``, ``h k(v) ≤ e^{-g²/2}``, and a
        node whose bound lies :attr:`CUTOFF` nats below the best node's exact term is dropped
        (a relative error below ``nodes · e^{-CUTOFF}``).
        """
        t, log_weights = _quadrature(self.nodes, 0.0, self.TURN, x)
        # p(n) = 2n / (3π)², times the interval length (the weights sum to 1).
        log_node = torch.log(2 * t / self.TURN) + log_weights  # (N,)
        width = self.BOX / self.SIGMA
        corner = self._curve(t) / self.SIGMA  # (N, 2)
        offsets = [x[:, i, None] / self.SIGMA - corner[:, i] for i in range(2)]  # 2 × (B, N)
        bound = log_node - sum(_half_square_gap(offset, width) for offset in offsets)
        rows = torch.arange(x.shape[0], device=x.device)
        best = bound.argmax(dim=1)
        best_exact = log_node[best] + sum(
            _log_diff_ndtr(offset[rows, best], width) for offset in offsets
        )
        b, j = torch.nonzero(bound >= best_exact[:, None] - self.CUTOFF, as_tuple=True)
        exact = log_node[j] + sum(_log_diff_ndtr(offset[b, j], width) for offset in offsets)
        return _logsumexp_by_group(exact, b, x.shape[0]) - 2 * math.log(self.BOX)


class Pinwheel(Toy2D):
    """Five curved arms: ``x = 2 R(-a) f``, ``a = 2πk/5 + 0.25 e^{f_0}`` (FFJORD's ``pinwheel``).

    The class ``k`` is uniform on ``0..4`` and ``f ~ N((1, 0), diag(0.3², 0.1²))``, so
    ``p(x) = (1/5) Σ_k Σ_f p_f(f) / |det ∂x/∂f|`` over the preimages ``f`` of ``x`` in each
    class, with ``|det ∂x/∂f| = 4 |1 + 0.25 e^{f_0} f_1|``.

    The preimages of ``x`` in class ``k`` are the roots ``s = f_0`` of
    ``F(s) = s - ρ cos(ψ_k + 0.25 e^s)`` on ``[-ρ, ρ]``, with ``ρ = |x|/2``, ``ψ_k = ϑ + 2πk/5``
    and ``ϑ`` the polar angle of ``x``; then ``f_1 = ρ sin(ψ_k + 0.25 e^s)`` and
    ``F'(s) = 1 + 0.25 e^{f_0} f_1`` is the stretch factor of the Jacobian. Near the data ``F``
    is increasing and has one root; far out (``ρ ≳ 1.7``) the map folds, and a point can have
    three or more preimages in one class.

    Args:
        cells: cells of the grid on which the roots are bracketed (half of them uniform in
            ``s``, half in ``e^s``). Each cell is split at the critical point of ``F`` it holds,
            if any, so that even the close pairs of roots near a fold get a bracket each; the
            grid only has to resolve the oscillation of ``sin(ψ + 0.25 e^s)``. The default
            agrees with a 16 times finer grid to 1e-12 nats on samples and on ``[-8, 8]²``,
            and with an independent brute-force scan for preimages (both in the tests).
    """

    RADIAL_STD = 0.3
    TANGENTIAL_STD = 0.1
    CLASSES = 5
    RATE = 0.25
    SCALE = 2.0

    def __init__(self, *, cells: int = 32) -> None:
        super().__init__("pinwheel", 2.32)
        self.cells = positive_int(cells, "cells", "Pinwheel", minimum=2)

    def _work_per_point(self) -> int:
        return self.CLASSES * (4 * self.cells + 3)

    def _sample(self, n: int, generator: torch.Generator) -> Tensor:
        std = torch.tensor([self.RADIAL_STD, self.TANGENTIAL_STD], dtype=torch.float64)
        features = _normal((n, 2), generator) * std.to(generator.device)
        features[:, 0] += 1.0
        label = _choice(n, self.CLASSES, generator).to(torch.float64)
        angle = 2 * math.pi * label / self.CLASSES + self.RATE * torch.exp(features[:, 0])
        cos, sin = torch.cos(angle), torch.sin(angle)
        f0, f1 = features.unbind(dim=1)
        return self.SCALE * torch.stack((f0 * cos + f1 * sin, -f0 * sin + f1 * cos), dim=1)

    def _log_prob(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        rho = torch.linalg.vector_norm(x, dim=1) / self.SCALE
        theta = torch.atan2(x[:, 1], x[:, 0])
        classes = torch.arange(self.CLASSES, dtype=x.dtype, device=x.device)
        phase = theta[:, None] + 2 * math.pi * classes / self.CLASSES  # (B, K)
        nodes = self._monotone_grid(rho, phase)  # (B, K, G)
        positive = self._residual(nodes, rho[:, None, None], phase[..., None]) > 0
        b, k, j = torch.nonzero(positive[..., 1:] != positive[..., :-1], as_tuple=True)
        rho, phase = rho[b], phase[b, k]
        root = _bisect(
            lambda s: self._residual(s, rho, phase) > 0,
            nodes[b, k, j],
            nodes[b, k, j + 1],
            positive[b, k, j],
        )
        return _logsumexp_by_group(self._log_preimage(root, rho, phase), b, batch)

    def _residual(self, s: Tensor, rho: Tensor, phase: Tensor) -> Tensor:
        """``F(s) = s - ρ cos(phase + 0.25 e^s)`` (broadcasting)."""
        return s - rho * torch.cos(phase + self.RATE * torch.exp(s))

    def _slope(self, s: Tensor, rho: Tensor, phase: Tensor) -> Tensor:
        """``F'(s) = 1 + 0.25 e^s ρ sin(phase + 0.25 e^s)`` (broadcasting)."""
        spin = self.RATE * torch.exp(s)
        return 1 + spin * rho * torch.sin(phase + spin)

    def _monotone_grid(self, rho: Tensor, phase: Tensor) -> Tensor:
        """Grid nodes ``(B, K, 2G - 1)`` between which ``F`` is monotone.

        Each cell of :meth:`_grid` gets one interior node: the critical point of ``F`` (found
        by bisection on ``F'``) where ``F'`` changes sign across the cell, its midpoint
        elsewhere. This holds as long as no cell contains two critical points.
        """
        grid = self._grid(rho)[:, None, :]  # (B, 1, G): the same for every class
        increasing = self._slope(grid, rho[:, None, None], phase[..., None]) > 0  # (B, K, G)
        grid = grid.expand_as(increasing)
        interior = (grid[..., 1:] + grid[..., :-1]) / 2
        b, k, j = torch.nonzero(increasing[..., 1:] != increasing[..., :-1], as_tuple=True)
        rho, phase = rho[b], phase[b, k]
        interior[b, k, j] = _bisect(
            lambda s: self._slope(s, rho, phase) > 0,
            grid[b, k, j],
            grid[b, k, j + 1],
            increasing[b, k, j],
        )
        interleaved = torch.stack((grid[..., :-1], interior), dim=-1).flatten(start_dim=-2)
        return torch.cat((interleaved, grid[..., -1:]), dim=-1)

    def _grid(self, rho: Tensor) -> Tensor:
        """Sorted grid ``(B, 2·cells + 2)`` on ``[-ρ - δ, ρ + δ]``.

        The roots lie in ``[-ρ, ρ]``; the margin ``δ`` makes ``F < 0`` at the left end and
        ``F > 0`` at the right one. Half of the nodes are uniform in ``s``, half uniform in
        ``e^s`` (i.e. in the polar angle of ``f``), which follows the oscillation of
        ``cos(ψ + 0.25 e^s)`` at large ``s``.
        """
        low, high = -rho[:, None] - 0.01, rho[:, None] + 0.01
        steps = torch.linspace(0, 1, self.cells + 1, dtype=rho.dtype, device=rho.device)
        uniform = low + (high - low) * steps
        # log(e^low + (e^high - e^low) t), written so that nothing overflows.
        exponential = high + torch.log(steps + (1 - steps) * torch.exp(low - high))
        grid = torch.cat((uniform, torch.maximum(exponential, low)), dim=1)
        return torch.sort(grid, dim=1).values

    def _log_preimage(self, f0: Tensor, rho: Tensor, phase: Tensor) -> Tensor:
        """``log p_f(f) - log|det ∂x/∂f| - log 5`` at the preimage with first feature ``f0``."""
        spin = self.RATE * torch.exp(f0)
        f1 = rho * torch.sin(phase + spin)
        log_features = (
            -0.5 * ((f0 - 1) / self.RADIAL_STD).square()
            - 0.5 * (f1 / self.TANGENTIAL_STD).square()
            - _LOG_2PI
            - math.log(self.RADIAL_STD * self.TANGENTIAL_STD)
        )
        log_det = 2 * math.log(self.SCALE) + torch.log(torch.abs(1 + spin * f1))
        return log_features - log_det - math.log(self.CLASSES)


TOY_DATASETS: dict[str, Toy2D] = {
    dataset.name: dataset
    for dataset in (
        Moons(),
        EightGaussians(),
        Pinwheel(),
        Checkerboard(),
        TwoSpirals(),
        Rings("rings", (3.0, 2.25, 1.5, 0.75), 0.08, 2.62),
        Rings("circles", (3.0, 1.5), 0.24, 3.27),
    )
}
"""The seven FFJORD toy distributions by name."""


def toy(name: str) -> Toy2D:
    """The toy distribution called ``name`` (see :data:`TOY_DATASETS`).

    Raises:
        ValueError: ``name`` is not one of the seven names.
    """
    try:
        return TOY_DATASETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(key) for key in TOY_DATASETS)
        raise ValueError(f"toy: unknown dataset {name!r}; valid names are {valid}") from None


# --------------------------------------------------------------------------------------------
# 8x8 digits
# --------------------------------------------------------------------------------------------

DIGITS_LEVELS = 17
"""Number of pixel levels of the digits (integers 0 to 16)."""

DIGITS_SHAPE = (1, 8, 8)
"""Shape of one digit image, ``(C, H, W)``."""

DIGITS_SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1000),
    "validation": (1000, 1350),
    "test": (1350, 1797),
}
"""Index ranges ``[start, stop)`` of the three splits in ``load_digits`` order."""


@functools.lru_cache(maxsize=1)
def _digit_images() -> np.ndarray:
    """All 1797 images ``(1797, 8, 8)``, float64 levels 0..16 (imported lazily: sklearn)."""
    from sklearn.datasets import load_digits

    return load_digits().images


def digits(split: str = "train", *, dtype: torch.dtype = torch.float32) -> Tensor:
    """A split of the 8x8 digits as a tensor ``(N, 1, 8, 8)`` of integer levels 0..16.

    scikit-learn's copy of the UCI optical digits (1797 images, shipped with the library: no
    download), split ``[:1000]`` train, ``[1000:1350]`` validation, ``[1350:]`` test.
    The levels are stored in a floating dtype (exact integers) so that :func:`dequantize`
    and the flows take them as they are. Sizes: train 1000, validation 350, test 447.
    Every call returns a new tensor.

    Raises:
        ValueError: ``split`` is not ``"train"``, ``"validation"`` or ``"test"``.
    """
    if split not in DIGITS_SPLITS:
        valid = ", ".join(repr(key) for key in DIGITS_SPLITS)
        raise ValueError(f"digits: unknown split {split!r}; valid splits are {valid}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"digits: dtype must be a floating torch.dtype, got {dtype!r}")
    start, stop = DIGITS_SPLITS[split]
    images = torch.tensor(_digit_images()[start:stop], dtype=dtype)
    return images.unsqueeze(1)


def dequantize(x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization ``y = x + u``, ``u ~ U[0, 1)`` elementwise: same shape as ``x``.

    For integer levels ``k`` the result lies in ``[k, k + 1)`` exactly, also after rounding
    to the dtype of ``x`` (a sum that would round up to ``k + 1`` is moved to the float just
    below). A new tensor is returned; ``x`` is not modified. For the digits this gives a
    continuous density on ``[0, 17)^64`` ("unit-bin space") whose log-likelihood lower-bounds
    that of the discrete data (Theis et al. 2016).

    Args:
        x: a floating batch ``(B, …)`` of integer levels, e.g. from :func:`digits`.
        generator: source of the noise (the noise is drawn on the generator's device and moved
            to that of ``x``). ``None`` means a fresh generator seeded with 0, i.e. the *same*
            noise on every call: pass one generator through all epochs of a training loop.
    """
    validate_batch(x, None, where="dequantize")
    generator = _default_generator(generator, "dequantize")
    noise = _uniform(tuple(x.shape), generator).to(x.device)
    y = (x.to(torch.float64) + noise).to(x.dtype)
    return torch.minimum(y, torch.nextafter(x + 1, x))


def bits_per_dim(log_likelihood: float | Tensor, *, dims: int = 64) -> float | Tensor:
    """Convert a log-likelihood per image (nats, unit-bin space) to bits per dimension.

    ``bpd = -log p / (dims · ln 2)``; works elementwise on a tensor and returns a float for a
    float. With dequantized data in unit-bin space (bins of width 1) this is the usual
    bits/dim of the discrete data's bound; the uniform density on ``[0, 17)^64`` gives
    ``log₂ 17 ≈ 4.087``.

    Args:
        log_likelihood: mean (or per-image) ``log p(y)`` of images in unit-bin space.
        dims: number of dimensions of one image (64 for 8x8 digits).
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0:
        raise ValueError(f"bits_per_dim: dims must be a positive int, got {dims!r}")
    return -log_likelihood / (dims * math.log(2))
