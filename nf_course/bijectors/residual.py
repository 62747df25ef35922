r"""Invertible residual flows (i-ResNet): ``z = x + r(x)`` with ``Lip(r) < 1``.

Mathematics (chapter 004 of Yang and Ryu, §2.3.4 "Residual flow" and "Enforcement of Lipschitz
constraint"; Hutchinson's estimator from lecture 003 of Isachenko; Behrmann et al. 2019,
*Invertible Residual Networks*; Chen et al. 2019, *Residual Flows for Invertible Generative
Modeling*). The chapter writes the generative map ``x = z + r(z)``; here, as everywhere in the
package, the residual block is the *normalizing* map ``z = f(x) = x + r(x)``.

* **Invertibility.** If ``Lip(r) ≤ L < 1``, then for a given ``z`` the map
  ``T(x) = z - r(x)`` is a contraction, and by Banach's fixed-point theorem it has exactly one
  fixed point ``x* = f⁻¹(z)``, reached from any start by ``x_{k+1} = z - r(x_k)`` with
  ``‖x_k - x*‖ ≤ L^k/(1 - L) · ‖x_1 - x_0‖``. The residual of an iterate bounds its error too:
  ``‖x_k - x*‖ ≤ ‖x_k + r(x_k) - z‖/(1 - L)`` (all norms Euclidean).
* **Lipschitz constraint.** ``r`` is an MLP ``W_{m+1} φ(… φ(W_1 x + b_1) …) + b_{m+1}`` with
  ``m`` hidden layers whose activation ``φ`` is 1-Lipschitz, so ``Lip(r) ≤ Π_i ‖W̃_i‖₂``.
  Every weight is spectrally normalized to ``‖W̃_i‖₂ ≤ c`` (Behrmann et al.:
  ``W̃ = W / max(1, σ(W)/c)``), hence ``Lip(r) ≤ c^{m+1} ≤ c < 1`` (see
  :class:`SpectralNormLinear` for how ``σ(W)`` is found).
* **Log-determinant.** ``log det(I + J_r) = Σ_{k≥1} (-1)^{k+1} tr(J_r^k)/k`` (the power series
  of the matrix logarithm, valid since ``‖J_r‖₂ ≤ L < 1``; ``det(I + J_r) > 0``). Three ways to
  evaluate it (keyword ``log_det``):

  - ``"exact"``: the full ``D × D`` Jacobian per sample (``D`` backward passes) and
    ``slogdet``;
  - ``"series"``: the first ``n`` terms, each trace by Hutchinson's ``tr(A) = E[vᵀAv]``
    (``E[vvᵀ] = I``) with ``vᵀJ^k`` built by ``k`` vector-Jacobian products. Biased by the
    truncation, by at most ``D L^{n+1}/((n+1)(1-L))`` (:func:`series_truncation_bound`);
  - ``"roulette"``: the Russian-roulette estimator of Chen et al., unbiased: a random number of
    terms ``N`` and term ``k`` reweighted by ``1/P(N ≥ k)``.

Costs, per sample, with ``C`` the cost of one pass of ``r``: ``forward`` is one pass plus the
log-det, ``O(D·C + D³)`` exact, ``O(n·C)`` series, ``O(E[N]·C)`` roulette; ``inverse`` is
``K ≈ log(tol)/log(L)`` passes of the fixed-point iteration (no gradients) plus the same
log-det at the solution, and its backward pass solves one more contraction (the adjoint
equation, below) of about ``K`` vector-Jacobian products.

Gradients of ``inverse``. The iteration runs without autograd; the returned ``x`` is one more
differentiable step ``z - r(x*)`` whose incoming gradient ``g`` is replaced, by a tensor hook,
with the solution ``u`` of ``u = g - J_r(x*)ᵀ u`` (also a contraction). That gives the implicit
function theorem's gradients, ``∂x/∂z = (I + J_r)^{-1}`` and ``∂x/∂θ = -(I + J_r)^{-1} ∂r/∂θ``:
exact first derivatives (higher derivatives of ``inverse`` are not supported).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf_course.common import (
    choice,
    default_tolerance,
    in_interval,
    positive_float,
    positive_int,
    validate_batch,
)
from nf_course.core import Bijector

__all__ = [
    "FixedPointConvergenceError",
    "InvertibleResidual",
    "SpectralNormLinear",
    "lipswish",
    "series_partial_sums",
    "series_truncation_bound",
]

LOG_DET_METHODS = ("exact", "series", "roulette")
ACTIVATIONS = ("lipswish", "elu")
NOISES = ("rademacher", "gaussian")

# max_t d/dt [t·sigmoid(t)] ≈ 1.0998, so dividing by 1.1 makes LipSwish 1-Lipschitz.
_LIPSWISH_SCALE = 1.1


class FixedPointConvergenceError(RuntimeError):
    """A fixed-point iteration (the inverse, or its adjoint in the backward pass) hit its cap."""


def lipswish(t: Tensor) -> Tensor:
    """``LipSwish(t) = t·sigmoid(t)/1.1`` (Chen et al. 2019), elementwise, any shape.

    Its derivative lies in ``[-0.0908, 0.99986]``, so it is 1-Lipschitz; it is smooth and its
    derivative does not sit at the bound on a half-line as ELU's does.
    """
    return t * torch.sigmoid(t) / _LIPSWISH_SCALE


def series_truncation_bound(n_terms: int, lipschitz: float, dim: int) -> float:
    r"""Bound on ``|log det(I + J) - Σ_{k≤n} (-1)^{k+1} tr(J^k)/k|`` for ``‖J‖₂ ≤ L < 1``.

    Each dropped term has ``|tr(J^k)|/k ≤ D L^k/k``, and ``Σ_{k>n} L^k/k ≤ L^{n+1}/((n+1)(1-L))``:
    the bound is ``D L^{n+1}/((n+1)(1-L))``.

    Args:
        n_terms: ``n ≥ 0``, the number of terms kept.
        lipschitz: ``L`` in ``[0, 1)``, a bound on ``‖J‖₂`` (e.g.
            :meth:`InvertibleResidual.lipschitz_bound`).
        dim: the dimension ``D``.
    """
    positive_int(n_terms, "n_terms", "series_truncation_bound", minimum=0)
    positive_int(dim, "dim", "series_truncation_bound")
    if not 0 <= lipschitz < 1:
        raise ValueError(f"series_truncation_bound: lipschitz must be in [0, 1), got {lipschitz}")
    return dim * lipschitz ** (n_terms + 1) / ((n_terms + 1) * (1 - lipschitz))


def series_partial_sums(traces: Tensor) -> Tensor:
    """Partial sums ``S_n = Σ_{k≤n} (-1)^{k+1} tr(J^k)/k`` from traces ``(B, K) -> (B, K)``.

    Column ``n-1`` of the result is the ``n``-term truncated series; pass the exact traces of
    :meth:`InvertibleResidual.exact_traces` to see the truncation error alone.
    """
    k = torch.arange(1, traces.shape[-1] + 1, dtype=traces.dtype, device=traces.device)
    signs = torch.where(k % 2 == 1, 1.0, -1.0).to(traces.dtype)
    return (signs / k * traces).cumsum(dim=-1)


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


def _needs_graph(x: Tensor, parameters: Sequence[tuple[Tensor, Tensor]]) -> bool:
    """Whether results at ``x`` must carry gradients (grad mode on and something to train)."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for pair in parameters for p in pair)
    )


class InvertibleResidual(Bijector):
    r"""An invertible residual block ``z = x + r(x)`` with ``Lip(r) ≤ c^{layers+1} < 1``.

    ``r`` is an MLP ``D → hidden → … → hidden → D`` with ``layers`` hidden layers, a 1-Lipschitz
    activation and every weight spectrally normalized to ``‖W̃‖₂ ≤ c`` (module docstring and
    :class:`SpectralNormLinear`). ``forward`` is explicit; ``inverse`` is the Banach
    fixed-point iteration ``x_{k+1} = z - r(x_k)`` from ``x_0 = z``, stopped per sample once
    ``‖x_k + r(x_k) - z‖∞ ≤ tol · max(1, ‖z‖∞)``, after which ``x = z - r(x_k)`` is returned
    (one more step). Its error is at most ``√D·tol·max(1, ‖z‖∞)/(1 - L)`` in the Euclidean
    norm, ``L = Lip(r)``; the iterations needed grow like ``log(tol)/log(L)``.

    Default activation: **LipSwish** (:func:`lipswish`), as in Residual Flows. The log-det
    involves ``φ'``, so its gradient involves ``φ''``: ELU has ``φ'' = 0`` on the whole positive
    half-line, exactly where ``φ' = 1`` and the Lipschitz budget is used, which Chen et al.
    found to starve the log-det of gradient; LipSwish is smooth, 1-Lipschitz and has
    ``φ'' ≠ 0`` almost everywhere. ``activation="elu"`` (also 1-Lipschitz) is Behrmann et al.'s.

    Log-determinant estimators (``log_det``): ``"exact"`` for small ``D``; ``"series"``, the
    first ``n_terms`` terms with Hutchinson traces: biased by the truncation (by at most
    :func:`series_truncation_bound`); ``"roulette"``: unbiased. The roulette always computes
    the first ``roulette_min_terms = m`` terms and then ``G ~ Geometric(roulette_p)`` more
    (``P(G ≥ j) = (1-p)^j``), so ``N = m + G`` and term ``k > m`` is weighted by
    ``1/P(N ≥ k) = (1-p)^{-(k-m)}``. Its variance is finite when ``(1-p) > L²`` (the weighted
    terms ``~ (L/(1-p))^k`` must stay square-summable against ``P(N = k)``); the expected
    number of terms is ``m + (1-p)/p``. The default ``p = 0.4`` keeps the variance finite for
    ``L < 0.77``, which covers the default ``c³ = 0.729``. Both stochastic estimators draw,
    from the global torch RNG (so ``torch.manual_seed`` reproduces them), one probe vector per
    sample (``hutchinson_noise``: Rademacher or Gaussian) and, for the roulette, one ``N`` per
    sample: the estimates of different samples are independent. A batch runs up to its largest
    ``N``. Gradients flow through all three (the series by ``create_graph=True``).

    Args:
        dim: the dimension ``D``.
        hidden: width of the hidden layers.
        layers: number of hidden layers (so ``layers + 1`` normalized linear maps).
        lipschitz: ``c`` in ``(0, 1)``, the spectral-norm bound of every weight.
        activation: ``"lipswish"`` or ``"elu"``.
        log_det: ``"exact"``, ``"series"`` or ``"roulette"``.
        n_terms: number of terms of the ``"series"`` estimator.
        roulette_p: success probability ``p`` of the roulette's geometric number of terms.
        roulette_min_terms: terms the roulette always computes.
        hutchinson_noise: ``"rademacher"`` (lower variance) or ``"gaussian"`` probe vectors.
        n_power_iterations: cap on power-iteration steps per weight update (then exact SVD).
        power_tol: relative tolerance of the power iteration.
        inverse_tol: tolerance of the fixed-point residual, relative to ``max(1, ‖z‖∞)``;
            ``None``: :func:`nf_course.common.default_tolerance` of the dtype
            (``1e-12`` in float64, about ``1e-6`` in float32).
        inverse_max_iter: iteration cap of the inverse and of its adjoint; reaching it raises
            :class:`FixedPointConvergenceError`.
        seed: seed of the initial parameters.

    Attributes:
        linears: the ``layers + 1`` :class:`SpectralNormLinear` maps of ``r``.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 64,
        layers: int = 2,
        lipschitz: float = 0.9,
        activation: str = "lipswish",
        log_det: str = "exact",
        n_terms: int = 8,
        roulette_p: float = 0.4,
        roulette_min_terms: int = 1,
        hutchinson_noise: str = "rademacher",
        n_power_iterations: int = 10,
        power_tol: float = 1e-13,
        inverse_tol: float | None = None,
        inverse_max_iter: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        where = "InvertibleResidual"
        self.dim = positive_int(dim, "dim", where)
        positive_int(hidden, "hidden", where)
        positive_int(layers, "layers", where)
        self.lipschitz = in_interval(lipschitz, "lipschitz", where, 0, 1)
        self.activation = choice(activation, ACTIVATIONS, "activation", where)
        self.log_det_mode = choice(log_det, LOG_DET_METHODS, "log_det", where)
        self.n_terms = positive_int(n_terms, "n_terms", where)
        self.roulette_p = in_interval(roulette_p, "roulette_p", where, 0, 1)
        self.roulette_min_terms = positive_int(roulette_min_terms, "roulette_min_terms", where)
        self.hutchinson_noise = choice(hutchinson_noise, NOISES, "hutchinson_noise", where)
        positive_int(n_power_iterations, "n_power_iterations", where)
        positive_float(power_tol, "power_tol", where)
        if inverse_tol is not None:
            positive_float(inverse_tol, "inverse_tol", where)
        self.inverse_tol = inverse_tol
        self.inverse_max_iter = positive_int(inverse_max_iter, "inverse_max_iter", where)
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

    # -- the residual network

    def normalized_weights(self) -> list[Tensor]:
        """The weights ``W̃_i`` actually used, each with ``‖W̃_i‖₂ ≤ c``; differentiable."""
        return [linear.normalized_weight() for linear in self.linears]

    def _parameters_now(self) -> list[tuple[Tensor, Tensor]]:
        return [
            (weight, linear.bias)
            for weight, linear in zip(self.normalized_weights(), self.linears, strict=True)
        ]

    def _residual(self, x: Tensor, parameters: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        """``r(x)`` for ``x`` of shape ``(…, D)`` with the given ``(W̃_i, b_i)``."""
        phi: Callable[[Tensor], Tensor] = lipswish if self.activation == "lipswish" else F.elu
        h = x
        for index, (weight, bias) in enumerate(parameters):
            h = F.linear(h, weight, bias)
            if index < len(parameters) - 1:
                h = phi(h)
        return h

    def residual(self, x: Tensor) -> Tensor:
        """``r(x)``, ``(B, D) -> (B, D)``: the residual branch alone, ``f(x) = x + r(x)``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.residual")
        return self._residual(x, self._parameters_now())

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

    def jacobian(self, x: Tensor) -> Tensor:
        """``J_r(x) = ∂r/∂x`` per sample by autograd, ``(B, D) -> (B, D, D)``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.jacobian")
        parameters = self._parameters_now()
        differentiable = _needs_graph(x, parameters)
        with torch.enable_grad():
            x_in = x.clone() if x.requires_grad else x.detach().requires_grad_(True)
            jacobian = self._jacobian(x_in, self._residual(x_in, parameters), differentiable)
        return jacobian if differentiable else jacobian.detach()

    def _jacobian(self, x_in: Tensor, r_out: Tensor, create_graph: bool) -> Tensor:
        """Rows ``∂r_j/∂x`` of every sample's Jacobian, one backward pass each: ``(B, D, D)``.

        Differentiating ``Σ_b r_j(x_b)`` gives each sample's own row because samples are
        independent. (``torch.func.jacrev`` would do the same, but its first call imports
        ``torch._dynamo``, several seconds.)
        """
        rows = [
            torch.autograd.grad(
                r_out[:, j].sum(), x_in, retain_graph=True, create_graph=create_graph
            )[0]
            for j in range(self.dim)
        ]
        return torch.stack(rows, dim=1)

    def exact_traces(self, x: Tensor, n_terms: int) -> Tensor:
        """``tr(J_r(x)^k)`` for ``k = 1..n_terms`` from the full Jacobian: ``(B, D) -> (B, n)``.

        The deterministic part of the series estimator: with :func:`series_partial_sums` it
        gives the truncation error without Hutchinson noise.
        """
        positive_int(n_terms, "n_terms", "InvertibleResidual.exact_traces")
        jacobian = self.jacobian(x)
        power = jacobian
        traces = [torch.diagonal(power, dim1=1, dim2=2).sum(dim=1)]
        for _ in range(n_terms - 1):
            power = power @ jacobian
            traces.append(torch.diagonal(power, dim1=1, dim2=2).sum(dim=1))
        return torch.stack(traces, dim=1)

    # -- log-determinant estimators

    def _probes(self, like: Tensor) -> Tensor:
        """One Hutchinson probe per sample, ``E[vvᵀ] = I``, from the global RNG: ``(B, D)``."""
        if self.hutchinson_noise == "gaussian":
            return torch.randn(like.shape, dtype=like.dtype, device=like.device)
        signs = torch.randint(0, 2, like.shape, device=like.device)
        return (2 * signs - 1).to(like.dtype)

    def _coefficients(self, method: str, n_terms: int, like: Tensor) -> Tensor:
        """Weights ``(B, K)`` of ``vᵀJ^k v``, ``k = 1..K``, for the series or the roulette."""
        batch = like.shape[0]
        if method == "series":
            count = torch.full((batch,), n_terms, device=like.device)
            survival = torch.ones(batch, n_terms, dtype=like.dtype, device=like.device)
        else:
            extra = torch.empty(batch, device=like.device).geometric_(self.roulette_p) - 1
            count = (extra + self.roulette_min_terms).long()
            k = torch.arange(1, int(count.max()) + 1, device=like.device)
            beyond = torch.clamp(k - self.roulette_min_terms, min=0).to(like.dtype)
            survival = (1 - self.roulette_p) ** beyond.expand(batch, -1)
        k = torch.arange(1, survival.shape[1] + 1, device=like.device)
        signs = torch.where(k % 2 == 1, 1.0, -1.0).to(like.dtype)
        kept = (k <= count.unsqueeze(1)).to(like.dtype)
        return kept * signs / k.to(like.dtype) / survival

    def _log_det(
        self,
        x_in: Tensor,
        r_out: Tensor,
        *,
        method: str,
        n_terms: int,
        create_graph: bool,
    ) -> Tensor:
        """``log det(I + J_r)`` at ``x_in`` by ``method``, with ``r_out = r(x_in)``: ``(B,)``."""
        method = choice(method, LOG_DET_METHODS, "log_det", "InvertibleResidual.log_det")
        if method == "exact":
            jacobian = self._jacobian(x_in, r_out, create_graph)
            eye = torch.eye(self.dim, dtype=x_in.dtype, device=x_in.device)
            return torch.linalg.slogdet(eye + jacobian).logabsdet
        positive_int(n_terms, "n_terms", "InvertibleResidual")
        probe = self._probes(x_in)
        coefficients = self._coefficients(method, n_terms, x_in)
        total = x_in.new_zeros(x_in.shape[0])
        product = probe
        for k in range(coefficients.shape[1]):
            # product = (J_rᵀ)^k v, so product · v = vᵀ J_r^k v.
            (product,) = torch.autograd.grad(
                r_out, x_in, product, retain_graph=True, create_graph=create_graph
            )
            total = total + coefficients[:, k] * (product * probe).sum(dim=1)
        return total

    def _forward_with(
        self,
        x: Tensor,
        parameters: Sequence[tuple[Tensor, Tensor]],
        *,
        method: str,
        n_terms: int,
    ) -> tuple[Tensor, Tensor]:
        """``(z, log_det)`` at ``x`` with the given parameters and estimator."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "InvertibleResidual: the log-det needs autograd (Jacobian-vector products), "
                "which torch.inference_mode() switches off; use torch.no_grad() instead"
            )
        differentiable = _needs_graph(x, parameters)
        with torch.enable_grad():
            # A fresh node: the estimators differentiate with respect to x_in, which must not
            # run hooks that callers (or inverse) placed on x itself.
            x_in = x.clone() if x.requires_grad else x.detach().requires_grad_(True)
            r_out = self._residual(x_in, parameters)
            log_det = self._log_det(
                x_in, r_out, method=method, n_terms=n_terms, create_graph=differentiable
            )
            z = x_in + r_out
        if not differentiable:
            return z.detach(), log_det.detach()
        return z, log_det

    def estimate_log_det(
        self, x: Tensor, *, method: str | None = None, n_terms: int | None = None
    ) -> Tensor:
        """``log|det ∂f/∂x|`` at ``x`` by ``method`` (default: the layer's), ``(B, D) -> (B,)``.

        Lets one layer be evaluated with every estimator, e.g. to compare them with
        ``"exact"``; ``n_terms`` overrides the series length.
        """
        validate_batch(x, (self.dim,), where="InvertibleResidual.estimate_log_det")
        _, log_det = self._forward_with(
            x,
            self._parameters_now(),
            method=self.log_det_mode if method is None else method,
            n_terms=self.n_terms if n_terms is None else n_terms,
        )
        return log_det

    # -- the two directions

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = x + r(x) (B, D), log det(I + J_r(x)) (B,))``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.forward")
        return self._forward_with(
            x, self._parameters_now(), method=self.log_det_mode, n_terms=self.n_terms
        )

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -log det(I + J_r(x)) (B,))`` by fixed-point iteration.

        Raises:
            FixedPointConvergenceError: some sample has not converged in ``inverse_max_iter``
                iterations.
        """
        validate_batch(z, (self.dim,), where="InvertibleResidual.inverse", name="z")
        parameters = self._parameters_now()
        frozen = [(weight.detach(), bias.detach()) for weight, bias in parameters]
        tol = self.inverse_tol if self.inverse_tol is not None else default_tolerance(z.dtype)
        x_star = self._fixed_point(z.detach(), frozen, tol)
        if _needs_graph(z, parameters):
            x = z - self._residual(x_star, parameters)
            x.register_hook(self._adjoint_hook(x_star, frozen, tol))
        else:
            x = z.detach() - self._residual(x_star, frozen)
        _, log_det = self._forward_with(
            x, parameters, method=self.log_det_mode, n_terms=self.n_terms
        )
        return x, -log_det

    @torch.no_grad()
    def _fixed_point(
        self, z: Tensor, parameters: Sequence[tuple[Tensor, Tensor]], tol: float
    ) -> Tensor:
        """Banach iteration ``x ← z - r(x)`` from ``x = z``, per sample until converged."""
        threshold = tol * torch.clamp(z.abs().amax(dim=1), min=1.0)
        x = z.clone()
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        worst = math.inf
        for _ in range(self.inverse_max_iter):
            residual = x + self._residual(x, parameters) - z
            error = residual.abs().amax(dim=1)
            done = done | (error <= threshold)
            if bool(done.all()):
                return x
            x = torch.where(done.unsqueeze(1), x, x - residual)
            worst = error.masked_fill(done, 0).max().item()
        raise FixedPointConvergenceError(
            f"InvertibleResidual.inverse: the fixed-point iteration x ← z - r(x) did not converge "
            f"in inverse_max_iter={self.inverse_max_iter} iterations: largest residual "
            f"‖x + r(x) - z‖∞ = {worst:.3g} > tol = {tol:g}·max(1, ‖z‖∞) "
            f"({int((~done).sum())} of {done.numel()} samples unfinished); pass a larger "
            "inverse_max_iter or inverse_tol, or check z for inf or NaN"
        )

    def _adjoint_hook(
        self, x_star: Tensor, parameters: Sequence[tuple[Tensor, Tensor]], tol: float
    ) -> Callable[[Tensor], Tensor]:
        """A hook mapping ``g = ∂L/∂x`` to ``u = (I + J_r(x*))^{-T} g`` by ``u ← g - J_rᵀu``."""
        with torch.enable_grad():
            point = x_star.detach().requires_grad_(True)
            r_point = self._residual(point, parameters)

        def hook(grad: Tensor) -> Tensor:
            threshold = tol * max(1.0, grad.abs().max().item())
            u = grad
            for _ in range(self.inverse_max_iter):
                (vjp,) = torch.autograd.grad(r_point, point, u, retain_graph=True)
                u_next = grad - vjp
                change = (u_next - u).abs().max().item()
                u = u_next
                if change <= threshold:
                    return u
            raise FixedPointConvergenceError(
                "InvertibleResidual.inverse (backward): the adjoint iteration u ← g - J_rᵀu did "
                f"not converge in inverse_max_iter={self.inverse_max_iter} iterations: last "
                f"change {change:.3g} > tol = {tol:g}·max(1, ‖g‖∞)"
            )

        return hook

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, lipschitz={self.lipschitz}, activation={self.activation!r}, "
            f"log_det={self.log_det_mode!r}"
        )
