"""The Lipschitz-constrained network of an invertible residual block: spectrally normalized
linear layers (:class:`SpectralNormLinear`) and the MLP built from them (:class:`LipschitzMLP`),
with ``Lip(r) ≤ c^{layers+1} < 1``.

Chapter: ``book/06_invertible_residual.md`` (spectral normalization, why LipSwish); the block
that uses the network is :class:`nf_course.bijectors.residual.InvertibleResidual`; tests:
``tests/test_residual.py``; assignment ``solutions/07_residual`` (spectral normalization).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf_course.common import choice, in_interval, positive_float, positive_int

__all__ = ["ACTIVATIONS", "LipschitzMLP", "SpectralNormLinear", "lipswish"]

ACTIVATIONS = ("lipswish", "elu")

# max_t d/dt [t·sigmoid(t)] ≈ 1.0998, so dividing by 1.1 makes LipSwish 1-Lipschitz.
_LIPSWISH_SCALE = 1.1


def lipswish(t: Tensor) -> Tensor:
    """``LipSwish(t) = t·sigmoid(t)/1.1`` (Chen et al. 2019), elementwise, any shape.

    Its derivative lies in ``[-0.0908, 0.99986]``, so it is 1-Lipschitz; it is smooth and its
    derivative does not sit at the bound on a half-line as ELU's does.
    """
    return t * torch.sigmoid(t) / _LIPSWISH_SCALE


class SpectralNormLinear(nn.Module):
    r"""A linear layer ``y = W̃ x + b`` whose weight is spectrally normalized: ``‖W̃‖₂ ≤ c``.

    ``W̃ = W / max(1, σ̂/c)`` where ``σ̂ = uᵀWv`` (differentiable in ``W``; ``u``, ``v`` are
    constants) and ``(u, v)`` approximate the top singular pair of ``W``. Layers with
    ``σ̂ ≤ c`` are left as they are (Behrmann et al. 2019).

    How ``(u, v)`` are kept, and why the bound holds after every optimizer step.

    * ``u``, ``v`` are persistent buffers (saved in the ``state_dict``), refined by power
      iteration ``u ← Wv/‖Wv‖, v ← Wᵀu/‖Wᵀu‖``, warm-started from their last value.
    * They are refined **only when the weight has changed**: a non-persistent snapshot of the
      weight is compared with it (``torch.equal``, one pass over ``W``) at each call. Two calls
      with the same parameters therefore compute the same map (deterministic, also in train
      mode: the checker's ``determinism`` check), and any change of ``W`` (an optimizer step,
      ``load_state_dict``, an in-place edit under ``no_grad``, a dtype change) triggers a
      refresh before use, so nothing is stale (``parameter_update``). Comparing the contents
      rather than ``W._version`` also survives ``deepcopy`` and ``.data`` assignments.
    * Power iteration only ever *underestimates* ``σ(W)`` (``‖Wv‖ ≤ σ`` for a unit ``v``), and
      an underestimate would let ``‖W̃‖₂`` exceed ``c``. So each refresh iterates, in float64,
      until the relative change of the estimate is at most ``power_tol`` (default ``1e-13``).
      Where the two leading singular values dominate, with ``ρ = (σ₂/σ₁)²``, the error of
      ``σ̂²`` is at most ``(1 - ρ)σ₁²`` and shrinks by about ``ρ²`` per step, so a step changes
      ``σ̂²`` by that error times ``1 - ρ²``; together they bound the remaining relative error
      of ``σ̂`` by about ``½√(2·power_tol) ≈ 2·10⁻⁷``, whatever the gap. If
      ``n_power_iterations`` steps do not reach the tolerance, the layer falls back to an exact
      SVD (``torch.linalg.svd``, accurate to rounding) and restarts from its top pair. The one
      case no stopping rule can see is a start vector (numerically) orthogonal to the top
      singular vector; a warm start after an update is generically not that, and the initial
      vectors come from an exact SVD.
    * Cost, measured: Adam steps of ``1e-2`` move a 16-wide weight enough that nearly every
      refresh ends in the SVD (the warm start needs tens to hundreds of steps to reach
      ``1e-13`` when ``ρ`` is near 1); the power iteration pays off when updates are small
      (late training, fine-tuning, a loaded checkpoint). For the widths used here one SVD costs
      about as much as 10 to 30 power steps, which is why the default cap is 10.
    * With a converged pair, ``∂σ̂/∂W = uvᵀ`` is the true gradient of ``σ₁``.

    Args:
        in_features, out_features: the shape of ``W`` is ``(out_features, in_features)``.
        bound: ``c``, the largest allowed spectral norm.
        generator: the generator of the initial parameters (uniform on ``±1/√in_features``,
            the ``nn.Linear`` default).
        n_power_iterations: cap on power-iteration steps per refresh.
        power_tol: relative tolerance of the power iteration.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bound: float,
        generator: torch.Generator,
        n_power_iterations: int = 10,
        power_tol: float = 1e-13,
    ) -> None:
        super().__init__()
        self.bound = bound
        self.n_power_iterations = n_power_iterations
        self.power_tol = power_tol
        limit = 1 / math.sqrt(in_features)

        def uniform(*shape: int) -> Tensor:
            sample = torch.rand(shape, generator=generator, dtype=torch.float64)
            return ((2 * sample - 1) * limit).to(torch.get_default_dtype())

        self.weight = nn.Parameter(uniform(out_features, in_features))
        self.bias = nn.Parameter(uniform(out_features))
        left, right, _ = self._exact_top_pair(self.weight.detach().double())
        self.register_buffer("left", left.to(self.weight.dtype))
        self.register_buffer("right", right.to(self.weight.dtype))
        self.register_buffer("_weight_seen", self.weight.detach().clone(), persistent=False)

    @staticmethod
    def _exact_top_pair(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u, v, σ)``: the top singular pair of ``weight`` by a full SVD."""
        left, singular_values, right_h = torch.linalg.svd(weight, full_matrices=False)
        return left[:, 0], right_h[0], singular_values[0]

    @torch.no_grad()
    def refresh(self) -> bool:
        """Refine ``u``, ``v`` for the current weight if it changed; return whether it did."""
        weight = self.weight.detach()
        if self._weight_seen.shape == weight.shape and torch.equal(self._weight_seen, weight):
            return False
        matrix = weight.double()
        right = self.right.double()
        converged = False
        sigma_previous = -1.0
        if right.norm() > 0:
            right = right / right.norm()
            for _ in range(self.n_power_iterations):
                left = matrix @ right
                if left.norm() == 0:
                    break
                left = left / left.norm()
                right = matrix.mT @ left
                sigma = right.norm().item()
                right = right / sigma
                if abs(sigma - sigma_previous) <= self.power_tol * sigma:
                    converged = True
                    break
                sigma_previous = sigma
        if not converged:
            left, right, _ = self._exact_top_pair(matrix)
        self.left.copy_(left)
        self.right.copy_(right)
        self._weight_seen = weight.clone()
        return True

    def spectral_norm_estimate(self) -> Tensor:
        """``σ̂ = uᵀWv`` after a refresh, differentiable in ``W``, shape ``()``."""
        self.refresh()
        weight = self.weight
        return self.left.to(weight.dtype) @ weight @ self.right.to(weight.dtype)

    def normalized_weight(self) -> Tensor:
        """``W̃ = W / max(1, σ̂/c)``, shape ``(out_features, in_features)``."""
        scale = torch.clamp(self.spectral_norm_estimate() / self.bound, min=1.0)
        return self.weight / scale

    def forward(self, x: Tensor) -> Tensor:
        """``(…, in_features) -> (…, out_features)``: ``x W̃ᵀ + b``."""
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, bound={self.bound}"


class LipschitzMLP(nn.Module):
    r"""``r(x) = W̃_{m+1} φ(… φ(W̃_1 x + b_1) …) + b_{m+1}`` with every ``‖W̃_i‖₂ ≤ c``.

    ``D → hidden → … → hidden → D`` with ``layers = m`` hidden layers, a 1-Lipschitz activation
    ``φ`` (:func:`lipswish` by default, ``"elu"`` as in Behrmann et al.) and every weight a
    :class:`SpectralNormLinear` bounded by ``c = lipschitz``.

    Args:
        dim: the dimension ``D`` of inputs and outputs.
        hidden: width of the hidden layers.
        layers: number of hidden layers (so ``layers + 1`` normalized linear maps).
        lipschitz: ``c`` in ``(0, 1)``, the spectral-norm bound of every weight.
        activation: ``"lipswish"`` or ``"elu"``.
        n_power_iterations: cap on power-iteration steps per weight update (then exact SVD).
        power_tol: relative tolerance of the power iteration.
        seed: seed of the initial parameters.

    Attributes:
        linears: the ``layers + 1`` :class:`SpectralNormLinear` maps.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        lipschitz: float = 0.9,
        activation: str = "lipswish",
        n_power_iterations: int = 10,
        power_tol: float = 1e-13,
        seed: int = 0,
    ) -> None:
        super().__init__()
        where = "LipschitzMLP"
        self.dim = positive_int(dim, "dim", where)
        positive_int(hidden, "hidden", where)
        positive_int(layers, "layers", where)
        self.lipschitz = in_interval(lipschitz, "lipschitz", where, 0, 1)
        self.activation = choice(activation, ACTIVATIONS, "activation", where)
        positive_int(n_power_iterations, "n_power_iterations", where)
        positive_float(power_tol, "power_tol", where)
        generator = torch.Generator().manual_seed(seed)
        widths = [dim] + [hidden] * layers + [dim]
        self.linears = nn.ModuleList(
            SpectralNormLinear(
                widths[i],
                widths[i + 1],
                bound=self.lipschitz,
                generator=generator,
                n_power_iterations=n_power_iterations,
                power_tol=power_tol,
            )
            for i in range(len(widths) - 1)
        )

    def normalized_weights(self) -> list[Tensor]:
        """The weights ``W̃_i`` actually used, each with ``‖W̃_i‖₂ ≤ c``; differentiable."""
        return [linear.normalized_weight() for linear in self.linears]

    def weights_and_biases(self) -> list[tuple[Tensor, Tensor]]:
        """``(W̃_i, b_i)`` of every layer, as :meth:`apply` takes them."""
        return [
            (weight, linear.bias)
            for weight, linear in zip(self.normalized_weights(), self.linears, strict=True)
        ]

    def apply(self, x: Tensor, parameters: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``r(x)`` for ``x (…, D)`` with the given ``(W̃_i, b_i)`` (e.g. detached copies, so that a
        fixed-point iteration builds no graph)."""
        phi: Callable[[Tensor], Tensor] = lipswish if self.activation == "lipswish" else F.elu
        h = x
        for index, (weight, bias) in enumerate(parameters):
            h = F.linear(h, weight, bias)
            if index < len(parameters) - 1:
                h = phi(h)
        return h

    def forward(self, x: Tensor) -> Tensor:
        """``r(x)``, ``(…, D) -> (…, D)``."""
        return self.apply(x, self.weights_and_biases())

    def lipschitz_bound(self, *, exact: bool = False) -> float:
        """``Π_i ‖W̃_i‖₂``, an upper bound on ``Lip(r)``, at most ``c^{layers+1}``.

        ``exact=False`` uses the power-iteration estimates, ``exact=True`` the largest singular
        values from ``torch.linalg.svdvals``.
        """
        with torch.no_grad():
            weights = self.normalized_weights()
            norms = [
                torch.linalg.svdvals(weight)[0]
                if exact
                else linear.left.to(weight.dtype) @ weight @ linear.right.to(weight.dtype)
                for weight, linear in zip(weights, self.linears, strict=True)
            ]
        return math.prod(float(norm) for norm in norms)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, lipschitz={self.lipschitz}, activation={self.activation!r}"
