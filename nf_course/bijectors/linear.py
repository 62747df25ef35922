"""Linear flows and permutations: invertible matrices (:class:`DenseMatrix`, :class:`LUMatrix`,
:class:`QRMatrix`) in ``z = W x + b`` (:class:`Linear`, :class:`LinearLU`, :class:`LinearQR`),
Glow's invertible 1x1 convolution (:class:`InvConv1x1`) and fixed permutations
(:class:`Permutation`, :class:`Reverse`).

Chapter: ``book/04_linear_flows.md`` (Kingma and Dhariwal 2018 for the 1x1 convolution); tests:
``tests/test_linear.py``; assignment: ``solutions/02_linear_flows``; benchmark:
``benchmarks/kl_2d.py`` (``LinearLU`` in its Glow-style stack).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf_course.common import positive_int, validate_batch, validate_images
from nf_course.core import Bijector

__all__ = [
    "DenseMatrix",
    "InvConv1x1",
    "InvertibleMatrix",
    "LUMatrix",
    "Linear",
    "LinearLU",
    "LinearQR",
    "Permutation",
    "QRMatrix",
    "Reverse",
    "random_orthogonal",
]


def random_orthogonal(dim: int, *, generator: torch.Generator) -> Tensor:
    """A random orthogonal ``(dim, dim)`` float64 matrix, uniform (Haar) on the orthogonal group.

    The Q factor of a Gaussian matrix, with its columns multiplied by the signs of the diagonal
    of R so that the decomposition is unique and the result uniformly distributed
    (Mezzadri 2007, "How to generate random matrices from the classical compact groups").
    """
    A = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    return Q * torch.sign(torch.diagonal(R))


def _initial_orthogonal(dim: int, seed: int) -> Tensor:
    """``random_orthogonal`` drawn from a generator seeded with ``seed`` (never the global RNG)."""
    return random_orthogonal(dim, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- matrices


class InvertibleMatrix(nn.Module):
    """An invertible ``(D, D)`` matrix ``W`` given by parameters: the interface of the linear flows.

    Subclasses say how ``W`` is built from its parameters and implement, on columns
    ``v`` of shape ``(D, N)`` (one column per vector):

    * ``matmul(v)``: ``W v``, ``(D, N) -> (D, N)``;
    * ``solve(v)``: ``W⁻¹ v``, ``(D, N) -> (D, N)``, without forming ``W⁻¹``;
    * ``log_abs_det()``: ``log|det W|``, a 0-dimensional tensor.

    Everything is recomputed from the parameters at each call: nothing derived from them (a
    product, an inverse, a decomposition) is cached, so an optimizer step is always seen.
    """

    dim: int

    def matmul(self, v: Tensor) -> Tensor:
        """``W v``: ``(D, N) -> (D, N)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement matmul")

    def solve(self, v: Tensor) -> Tensor:
        """``W⁻¹ v``: ``(D, N) -> (D, N)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement solve")

    def log_abs_det(self) -> Tensor:
        """``log|det W|``, shape ``()``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement log_abs_det")

    def matrix(self) -> Tensor:
        """The assembled ``W``, ``(D, D)`` (for inspection and tests; the flows never need it)."""
        reference = next(self.parameters())
        return self.matmul(torch.eye(self.dim, dtype=reference.dtype, device=reference.device))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class DenseMatrix(InvertibleMatrix):
    """``W`` is itself the parameter: any invertible matrix, at ``O(D³)`` for det and solve.

    Args:
        dim: the size ``D``.
        seed: seed of the generator that draws the initial ``W``, a random orthogonal matrix.

    Attributes:
        W: the matrix, ``(D, D)``.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", type(self).__name__)
        self.W = nn.Parameter(_initial_orthogonal(dim, seed).to(torch.get_default_dtype()))

    def matmul(self, v: Tensor) -> Tensor:
        """``W v``, ``O(D²)`` per column."""
        return self.W @ v

    def solve(self, v: Tensor) -> Tensor:
        """``W⁻¹ v`` by an LU factorization of ``W`` (``O(D³)`` per call, ``O(D²)`` per column)."""
        return torch.linalg.solve(self.W, v)

    def log_abs_det(self) -> Tensor:
        """``log|det W|`` by ``slogdet``, ``O(D³)``."""
        return torch.linalg.slogdet(self.W).logabsdet


class LUMatrix(InvertibleMatrix):
    """``W = P L U``: the LU parametrization (Isachenko, Ozon Masters 2022, AI Masters 2024; Glow).

    At initialization a random orthogonal ``W₀`` is decomposed once, ``W₀ = P L U``
    (``torch.linalg.lu``); from then on the factors are the parameters. ``P`` and the signs of the
    diagonal ``s`` of ``U`` stay fixed (buffers); ``L``, the strictly upper part of ``U`` and
    ``log|s|`` are trained. The lectures ask for positive diagonals on both ``L`` and ``U``;
    here, as in Glow, ``L`` has a unit diagonal (a free one would duplicate the scale of ``U``)
    and the frozen signs of ``s`` let ``det W`` be negative. Training cannot change the sign of
    ``det W`` anyway: ``W₀`` chooses it.

    Args:
        dim: the size ``D``.
        seed: seed of the generator that draws ``W₀``.

    Attributes:
        P: the permutation matrix, ``(D, D)`` buffer.
        L: ``(D, D)`` parameter of which only the strictly lower triangle is used (the diagonal
            of the factor ``L`` is one).
        U: ``(D, D)`` parameter of which only the strictly upper triangle is used.
        log_s: ``(D,)`` parameter, ``log|s|`` for the diagonal ``s`` of the factor ``U``.
        sign_s: ``(D,)`` buffer, the fixed signs of ``s``.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", type(self).__name__)
        P, L, U = torch.linalg.lu(_initial_orthogonal(dim, seed))
        s = torch.diagonal(U)
        dtype = torch.get_default_dtype()
        self.register_buffer("P", P.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.L = nn.Parameter(torch.tril(L, diagonal=-1).to(dtype))
        self.U = nn.Parameter(torch.triu(U, diagonal=1).to(dtype))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """The factors ``(P, L, U)``, each ``(D, D)``, with ``W = P L U``."""
        eye = torch.eye(self.dim, dtype=self.L.dtype, device=self.L.device)
        L = torch.tril(self.L, diagonal=-1) + eye
        U = torch.triu(self.U, diagonal=1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P, L, U

    def matmul(self, v: Tensor) -> Tensor:
        """``P (L (U v))``, three ``O(D²)`` products per column."""
        P, L, U = self.factors()
        return P @ (L @ (U @ v))

    def solve(self, v: Tensor) -> Tensor:
        """``U⁻¹ L⁻¹ Pᵀ v`` by two triangular solves, ``O(D²)`` per column."""
        P, L, U = self.factors()
        y = torch.linalg.solve_triangular(L, P.mT @ v, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(U, y, upper=True)

    def log_abs_det(self) -> Tensor:
        """``Σ log|s_i|``, ``O(D)``: the determinant of ``P L U`` is ``±Π s_i``."""
        return self.log_s.sum()


class QRMatrix(InvertibleMatrix):
    """``W = Q R`` with ``Q`` a product of Householder reflections (Isachenko, Ozon Masters
    2022, AI Masters 2024).

    ``Q = H_1 H_2 ⋯ H_D`` with ``H_k = I - 2 v_k v_kᵀ / ‖v_k‖²``, and ``R`` upper triangular with
    positive diagonal ``r = exp(log_r)``.

    Why Householder reflections rather than ``matrix_exp`` of a skew-symmetric matrix: each ``H_k``
    is orthogonal for every nonzero ``v_k`` up to rounding alone (no series or Padé
    approximation), applying ``Q`` or ``Qᵀ = H_D ⋯ H_1`` to a vector costs ``O(D²)`` with no
    ``O(D³)`` step in either direction or in the backward pass, and ``D`` reflections reach every
    orthogonal matrix of determinant ``(-1)^D`` (Cartan–Dieudonné). The same construction gives
    the orthogonal matrices of Householder and Sylvester flows. The price is a loop of ``D``
    sequential rank-one updates, fine for the dimensions of this course.

    The initial ``W₀`` is drawn already factored: Gaussian vectors ``v_k`` from a seeded
    generator make ``Q`` a random orthogonal matrix and ``R = I``, so ``W₀ = Q`` is orthogonal and
    its QR decomposition is known without computing it.

    Args:
        dim: the size ``D``.
        seed: seed of the generator that draws the vectors ``v_k``.

    Attributes:
        V: ``(D, D)`` parameter, row ``k`` is ``v_k`` (it must stay nonzero, which a random
            vector does with probability one).
        R: ``(D, D)`` parameter of which only the strictly upper triangle is used.
        log_r: ``(D,)`` parameter, ``log r`` for the diagonal ``r`` of the factor ``R``.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", type(self).__name__)
        generator = torch.Generator().manual_seed(seed)
        V = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        self.V = nn.Parameter(V.to(torch.get_default_dtype()))
        self.R = nn.Parameter(torch.zeros(dim, dim))
        self.log_r = nn.Parameter(torch.zeros(dim))

    def _reflect(self, k: int, v: Tensor) -> Tensor:
        """``H_k v = v - 2 v_k (v_kᵀ v) / ‖v_k‖²``, ``(D, N) -> (D, N)``."""
        v_k = self.V[k]
        return v - torch.outer(v_k, v_k @ v) * (2 / v_k.dot(v_k))

    def q_matmul(self, v: Tensor) -> Tensor:
        """``Q v = H_1 (H_2 (⋯ (H_D v)))``, ``O(D²)`` per column."""
        for k in reversed(range(self.dim)):
            v = self._reflect(k, v)
        return v

    def q_t_matmul(self, v: Tensor) -> Tensor:
        """``Qᵀ v = H_D (⋯ (H_1 v))`` (each ``H_k`` is symmetric), ``O(D²)`` per column."""
        for k in range(self.dim):
            v = self._reflect(k, v)
        return v

    def factors(self) -> tuple[Tensor, Tensor]:
        """The factors ``(Q, R)``, each ``(D, D)``, with ``W = Q R``."""
        Q = self.q_matmul(torch.eye(self.dim, dtype=self.V.dtype, device=self.V.device))
        R = torch.triu(self.R, diagonal=1) + torch.diag(torch.exp(self.log_r))
        return Q, R

    def matmul(self, v: Tensor) -> Tensor:
        """``Q (R v)``, ``O(D²)`` per column."""
        R = torch.triu(self.R, diagonal=1) + torch.diag(torch.exp(self.log_r))
        return self.q_matmul(R @ v)

    def solve(self, v: Tensor) -> Tensor:
        """``R⁻¹ Qᵀ v``: reflections and one triangular solve, ``O(D²)`` per column."""
        R = torch.triu(self.R, diagonal=1) + torch.diag(torch.exp(self.log_r))
        return torch.linalg.solve_triangular(R, self.q_t_matmul(v), upper=True)

    def log_abs_det(self) -> Tensor:
        """``Σ log r_i``, ``O(D)``: ``|det Q| = 1`` and ``det R = Π r_i``."""
        return self.log_r.sum()


# ----------------------------------------------------------------------------- vector flows


class _AffineMap(Bijector):
    """``z = W x + b`` on vectors ``(B, D)``, with ``W`` an :class:`InvertibleMatrix`."""

    def __init__(self, W: InvertibleMatrix) -> None:
        super().__init__()
        self.dim = W.dim
        self.W = W
        self.b = nn.Parameter(torch.zeros(W.dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = W x + b (B, D), log|det W| (B,))``."""
        validate_batch(x, (self.dim,), where=f"{type(self).__name__}.forward")
        z = self.W.matmul(x.mT).mT + self.b
        return z, self.W.log_abs_det().repeat(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x = W⁻¹ (z - b) (B, D), -log|det W| (B,))``."""
        validate_batch(z, (self.dim,), where=f"{type(self).__name__}.inverse", name="z")
        x = self.W.solve((z - self.b).mT).mT
        return x, (-self.W.log_abs_det()).repeat(z.shape[0])

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Linear(_AffineMap):
    """``z = W x + b`` with a full matrix ``W``: the linear flow at its plainest.

    Cost: forward ``O(D²)`` per sample for ``W x``, plus ``O(D³)`` per call for
    ``log|det W|`` (``torch.linalg.slogdet``); inverse ``O(D³)`` per call to factorize ``W``
    (``torch.linalg.solve``, never an explicit inverse) plus ``O(D²)`` per sample.

    Initialization: ``W`` a random orthogonal matrix from a generator seeded with ``seed`` and
    ``b = 0``. Like the identity, it has ``|det W| = 1`` and condition number one, so a fresh
    flow is as well conditioned as possible and, with a standard normal base, has the base's
    density; unlike the identity, it mixes every coordinate from the first step (Glow's choice
    for its 1x1 convolutions), and it is the same ``W₀`` that :class:`LinearLU` decomposes for the
    same seed.

    Args:
        dim: the dimension ``D``.
        seed: seed of the initial ``W``.

    Attributes:
        W: a :class:`DenseMatrix`; its parameter ``W.W`` is the ``(D, D)`` matrix.
        b: ``(D,)`` parameter, the shift.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__(DenseMatrix(positive_int(dim, "dim", "Linear"), seed=seed))


class LinearLU(_AffineMap):
    """``z = W x + b`` with ``W = P L U`` (see :class:`LUMatrix`).

    Cost: forward ``O(D²)`` per sample; log-det ``Σ log|s_i|`` in ``O(D)``; inverse
    ``x = U⁻¹ L⁻¹ Pᵀ (z - b)`` by two triangular solves, ``O(D²)`` per sample.

    Initialization: a random orthogonal ``W₀`` (seeded) decomposed once by ``torch.linalg.lu``,
    and ``b = 0``.

    Args:
        dim: the dimension ``D``.
        seed: seed of ``W₀``.

    Attributes:
        W: an :class:`LUMatrix` holding ``P``, ``L``, ``U``, ``log_s`` and ``sign_s``.
        b: ``(D,)`` parameter, the shift.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__(LUMatrix(positive_int(dim, "dim", "LinearLU"), seed=seed))


class LinearQR(_AffineMap):
    """``z = W x + b`` with ``W = Q R``, ``Q`` a product of ``D`` Householder reflections.

    Cost: forward ``O(D²)`` per sample; log-det ``Σ log r_i`` in ``O(D)``; inverse
    ``x = R⁻¹ Qᵀ (z - b)``, ``O(D²)`` per sample. See :class:`QRMatrix` for the choice of
    Householder reflections.

    Initialization: ``W₀ = Q`` a random orthogonal matrix (seeded), ``R = I``, ``b = 0``.

    Args:
        dim: the dimension ``D``.
        seed: seed of the Householder vectors.

    Attributes:
        W: a :class:`QRMatrix` holding ``V`` (the reflection vectors), ``R`` and ``log_r``.
        b: ``(D,)`` parameter, the shift.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__(QRMatrix(positive_int(dim, "dim", "LinearQR"), seed=seed))


# ----------------------------------------------------------------------------- image flow


class InvConv1x1(Bijector):
    """Glow's invertible 1x1 convolution on images ``(B, C, H, W)`` (Kingma and Dhariwal 2018).

    The same ``C × C`` matrix multiplies the channel vector of every pixel; the Jacobian is block
    diagonal with ``H·W`` copies of it, so ``log|det ∂f/∂x| = H·W·log|det W|``. Works for any
    ``H`` and ``W`` (square or not).

    Args:
        channels: the number of channels ``C``.
        lu: ``True`` (default): the LU parametrization (:class:`LUMatrix`), log-det in ``O(C)`` and
            inverse by triangular solves; ``False``: a plain matrix (:class:`DenseMatrix`) with
            ``slogdet`` and ``solve`` in ``O(C³)``.
        seed: seed of the initial matrix, a random orthogonal one in both cases.

    Attributes:
        W: the :class:`InvertibleMatrix`, ``C × C``.
    """

    def __init__(self, channels: int, *, lu: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.channels = positive_int(channels, "channels", "InvConv1x1")
        self.lu = lu
        self.W = LUMatrix(channels, seed=seed) if lu else DenseMatrix(channels, seed=seed)

    def _validate(self, x: Tensor, where: str, name: str) -> None:
        validate_images(x, self.channels, where=f"InvConv1x1.{where}", name=name)

    @staticmethod
    def _to_columns(x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (C, B·H·W)``: one column per pixel."""
        return x.transpose(0, 1).reshape(x.shape[1], -1)

    @staticmethod
    def _from_columns(columns: Tensor, shape: torch.Size) -> Tensor:
        """``(C, B·H·W) -> (B, C, H, W)``, undoing :meth:`_to_columns`."""
        batch, channels, height, width = shape
        return columns.reshape(channels, batch, height, width).transpose(0, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W) -> (z (B, C, H, W), H·W·log|det W| (B,))``."""
        self._validate(x, "forward", "x")
        z = self._from_columns(self.W.matmul(self._to_columns(x)), x.shape)
        pixels = x.shape[2] * x.shape[3]
        return z, (pixels * self.W.log_abs_det()).repeat(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, C, H, W) -> (x (B, C, H, W), -H·W·log|det W| (B,))``."""
        self._validate(z, "inverse", "z")
        x = self._from_columns(self.W.solve(self._to_columns(z)), z.shape)
        pixels = z.shape[2] * z.shape[3]
        return x, (-pixels * self.W.log_abs_det()).repeat(z.shape[0])

    def extra_repr(self) -> str:
        return f"channels={self.channels}, lu={self.lu}"


# ----------------------------------------------------------------------------- permutations


class _Permute(Bijector):
    """``z = P x``, i.e. ``z_i = x_{π(i)}``, for a fixed permutation ``π``; log-det 0."""

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        self.dim = permutation.numel()
        self.register_buffer("permutation", permutation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (x[:, π] (B, D), 0 (B,))``."""
        validate_batch(x, (self.dim,), where=f"{type(self).__name__}.forward")
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (z[:, π⁻¹] (B, D), 0 (B,))``, with ``π⁻¹ = argsort(π)``."""
        validate_batch(z, (self.dim,), where=f"{type(self).__name__}.inverse", name="z")
        return z[:, torch.argsort(self.permutation)], z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Permutation(_Permute):
    """A fixed random permutation of the ``D`` features: ``z_i = x_{π(i)}``, log-det 0.

    ``π`` is drawn once by ``torch.randperm`` from a generator seeded with ``seed`` (the global
    random state is neither used nor changed) and kept in the buffer ``permutation``, so it is
    saved and restored with ``state_dict``. Layers built with the same seed share ``π``: pass
    different seeds when stacking several.

    Args:
        dim: the dimension ``D``.
        seed: seed of the generator that draws ``π``.

    Attributes:
        permutation: ``(D,)`` int64 buffer, ``π``.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        positive_int(dim, "dim", "Permutation")
        generator = torch.Generator().manual_seed(seed)
        super().__init__(torch.randperm(dim, generator=generator))


class Reverse(_Permute):
    """Reverses the order of the ``D`` features, ``z_i = x_{D-1-i}``; its own inverse, log-det 0.

    Args:
        dim: the dimension ``D``.

    Attributes:
        permutation: ``(D,)`` int64 buffer, ``D-1, …, 1, 0``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(torch.arange(positive_int(dim, "dim", "Reverse") - 1, -1, -1))
