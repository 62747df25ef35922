r"""Invertible residual flows (i-ResNet): the block ``z = x + r(x)`` with ``Lip(r) < 1``, its
fixed-point inverse, and the estimators of ``log det(I + J_r)`` as functions.

Chapter: ``book/06_invertible_residual.md`` (Banach's fixed point, the power series of the
log-det, Hutchinson's estimator, the Russian roulette; Behrmann et al. 2019, Chen et al. 2019);
the network ``r`` is in :mod:`nf_course.bijectors.lipschitz`; tests: ``tests/test_residual.py``;
assignment: ``solutions/07_residual``; benchmarks: ``benchmarks/residual_estimators.py``,
``benchmarks/kl_2d.py`` (``iresnet``). The normalizing map is the block, ``z = f(x) = x + r(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from nf_course.bijectors.lipschitz import (
    LipschitzMLP,
    SpectralNormLinear,
    lipswish,
)
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
    "LipschitzMLP",
    "SpectralNormLinear",
    "hutchinson_probe",
    "lipswish",
    "log_det_estimate",
    "power_series_weights",
    "residual_jacobian",
    "series_partial_sums",
    "series_truncation_bound",
]

LOG_DET_METHODS = ("exact", "series", "roulette")
NOISES = ("rademacher", "gaussian")


class FixedPointConvergenceError(RuntimeError):
    """A fixed-point iteration (the inverse, or its adjoint in the backward pass) hit its cap."""


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


def residual_jacobian(x_in: Tensor, r_out: Tensor, create_graph: bool) -> Tensor:
    """Rows ``∂r_j/∂x`` of every sample's Jacobian, one backward pass each: ``(B, D, D)``.

    ``r_out = r(x_in)``; differentiating ``Σ_b r_j(x_b)`` gives each sample's own row because
    samples are independent. (``torch.func.jacrev`` would do the same, but its first call
    imports ``torch._dynamo``, several seconds.)
    """
    rows = [
        torch.autograd.grad(r_out[:, j].sum(), x_in, retain_graph=True, create_graph=create_graph)[
            0
        ]
        for j in range(x_in.shape[1])
    ]
    return torch.stack(rows, dim=1)


def hutchinson_probe(like: Tensor, noise: str) -> Tensor:
    """One probe vector per sample with ``E[vvᵀ] = I``, from the global RNG: ``(B, D)``."""
    if choice(noise, NOISES, "noise", "hutchinson_probe") == "gaussian":
        return torch.randn(like.shape, dtype=like.dtype, device=like.device)
    signs = torch.randint(0, 2, like.shape, device=like.device)
    return (2 * signs - 1).to(like.dtype)


def power_series_weights(
    method: str, n_terms: int, like: Tensor, *, roulette_p: float, roulette_min_terms: int
) -> Tensor:
    """Weights ``(B, K)`` of ``vᵀJ^k v``, ``k = 1..K``, in the series or roulette estimate.

    ``"series"``: ``(-1)^{k+1}/k`` for ``k ≤ n_terms``. ``"roulette"``: each sample draws
    ``N = roulette_min_terms + G``, ``G ~ Geometric(roulette_p)`` from the global RNG, and term
    ``k ≤ N`` is reweighted by ``1/P(N ≥ k)`` (unbiased); ``K`` is the batch's largest ``N``.
    """
    batch = like.shape[0]
    if method == "series":
        count = torch.full((batch,), n_terms, device=like.device)
        survival = torch.ones(batch, n_terms, dtype=like.dtype, device=like.device)
    else:
        extra = torch.empty(batch, device=like.device).geometric_(roulette_p) - 1
        count = (extra + roulette_min_terms).long()
        k = torch.arange(1, int(count.max()) + 1, device=like.device)
        beyond = torch.clamp(k - roulette_min_terms, min=0).to(like.dtype)
        survival = (1 - roulette_p) ** beyond.expand(batch, -1)
    k = torch.arange(1, survival.shape[1] + 1, device=like.device)
    signs = torch.where(k % 2 == 1, 1.0, -1.0).to(like.dtype)
    kept = (k <= count.unsqueeze(1)).to(like.dtype)
    return kept * signs / k.to(like.dtype) / survival


def log_det_estimate(
    x_in: Tensor,
    r_out: Tensor,
    *,
    method: str,
    n_terms: int,
    noise: str = "rademacher",
    roulette_p: float = 0.4,
    roulette_min_terms: int = 1,
    create_graph: bool = False,
) -> Tensor:
    """``log det(I + J_r)`` at ``x_in (B, D)``, with ``r_out = r(x_in)`` on the graph: ``(B,)``.

    ``"exact"``: the full Jacobian (:func:`residual_jacobian`) and ``slogdet``; ``"series"`` and
    ``"roulette"``: ``Σ_k w_k vᵀJ^k v`` with :func:`power_series_weights` and a
    :func:`hutchinson_probe`, each ``vᵀJ^k`` one vector-Jacobian product.
    """
    method = choice(method, LOG_DET_METHODS, "log_det", "log_det_estimate")
    if method == "exact":
        jacobian = residual_jacobian(x_in, r_out, create_graph)
        eye = torch.eye(x_in.shape[1], dtype=x_in.dtype, device=x_in.device)
        return torch.linalg.slogdet(eye + jacobian).logabsdet
    positive_int(n_terms, "n_terms", "log_det_estimate")
    probe = hutchinson_probe(x_in, noise)
    weights = power_series_weights(
        method, n_terms, x_in, roulette_p=roulette_p, roulette_min_terms=roulette_min_terms
    )
    total = x_in.new_zeros(x_in.shape[0])
    product = probe
    for k in range(weights.shape[1]):
        # product = (J_rᵀ)^k v, so product · v = vᵀ J_r^k v.
        (product,) = torch.autograd.grad(
            r_out, x_in, product, retain_graph=True, create_graph=create_graph
        )
        total = total + weights[:, k] * (product * probe).sum(dim=1)
    return total


def _needs_graph(x: Tensor, parameters: Sequence[tuple[Tensor, Tensor]]) -> bool:
    """Whether results at ``x`` must carry gradients (grad mode on and something to train)."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for pair in parameters for p in pair)
    )


class InvertibleResidual(Bijector):
    r"""An invertible residual block ``z = x + r(x)`` with ``Lip(r) ≤ c^{layers+1} < 1``.

    ``r`` is a :class:`LipschitzMLP` (given as ``net``, or built from the network options
    below). ``forward`` is explicit; ``inverse`` is the Banach fixed-point iteration
    ``x_{k+1} = z - r(x_k)`` from ``x_0 = z``, stopped per sample once
    ``‖x_k + r(x_k) - z‖∞ ≤ tol · max(1, ‖z‖∞)``, after which ``x = z - r(x_k)`` is returned
    (one more step). Its error is at most ``√D·tol·max(1, ‖z‖∞)/(1 - L)`` in the Euclidean
    norm, ``L = Lip(r)``. The iteration runs without autograd; the returned ``x`` carries the
    implicit function theorem's gradients through a tensor hook that solves the adjoint
    contraction ``u = g - J_rᵀu`` (exact first derivatives).

    Log-determinant (``log_det``, :func:`log_det_estimate`): ``"exact"`` for small ``D``;
    ``"series"``, the first ``n_terms`` terms with Hutchinson traces, biased by at most
    :func:`series_truncation_bound`; ``"roulette"``, unbiased, with finite variance when
    ``1 - p > L²`` (the default ``p = 0.4`` covers ``L < 0.77``, hence the default
    ``c³ = 0.729``). The stochastic estimators draw from the global torch RNG, so
    ``torch.manual_seed`` reproduces them.

    Args:
        dim: the dimension ``D``.
        net: the residual network ``r``; by default a :class:`LipschitzMLP` with the options
            ``hidden``, ``layers``, ``lipschitz``, ``activation``, ``n_power_iterations``,
            ``power_tol`` and ``seed`` (see there).
        log_det: ``"exact"``, ``"series"`` or ``"roulette"``.
        n_terms: number of terms of the ``"series"`` estimator.
        roulette_p: success probability ``p`` of the roulette's geometric number of terms.
        roulette_min_terms: terms the roulette always computes.
        hutchinson_noise: ``"rademacher"`` (lower variance) or ``"gaussian"`` probe vectors.
        inverse_tol: tolerance of the fixed-point residual, relative to ``max(1, ‖z‖∞)``;
            ``None``: :func:`nf_course.common.default_tolerance` of the dtype.
        inverse_max_iter: iteration cap of the inverse and of its adjoint; reaching it raises
            :class:`FixedPointConvergenceError`.

    Attributes:
        net: the residual network.
    """

    def __init__(
        self,
        dim: int,
        *,
        net: LipschitzMLP | None = None,
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
        self.log_det_mode = choice(log_det, LOG_DET_METHODS, "log_det", where)
        self.n_terms = positive_int(n_terms, "n_terms", where)
        self.roulette_p = in_interval(roulette_p, "roulette_p", where, 0, 1)
        self.roulette_min_terms = positive_int(roulette_min_terms, "roulette_min_terms", where)
        self.hutchinson_noise = choice(hutchinson_noise, NOISES, "hutchinson_noise", where)
        if inverse_tol is not None:
            positive_float(inverse_tol, "inverse_tol", where)
        self.inverse_tol = inverse_tol
        self.inverse_max_iter = positive_int(inverse_max_iter, "inverse_max_iter", where)
        if net is None:
            net = LipschitzMLP(
                dim,
                hidden=hidden,
                layers=layers,
                lipschitz=lipschitz,
                activation=activation,
                n_power_iterations=n_power_iterations,
                power_tol=power_tol,
                seed=seed,
            )
        elif not isinstance(net, LipschitzMLP) or net.dim != self.dim:
            raise TypeError(f"{where}: net must be a LipschitzMLP of dimension {dim}, got {net!r}")
        self.net = net

    @property
    def lipschitz(self) -> float:
        """``c``, the spectral-norm bound of every weight of ``r``."""
        return self.net.lipschitz

    @property
    def linears(self) -> Sequence[SpectralNormLinear]:
        """The spectrally normalized linear maps of ``r``."""
        return self.net.linears

    def normalized_weights(self) -> list[Tensor]:
        """The weights ``W̃_i`` actually used, each with ``‖W̃_i‖₂ ≤ c``; differentiable."""
        return self.net.normalized_weights()

    def lipschitz_bound(self, *, exact: bool = False) -> float:
        """``Π_i ‖W̃_i‖₂``, an upper bound on ``Lip(r)``: :meth:`LipschitzMLP.lipschitz_bound`."""
        return self.net.lipschitz_bound(exact=exact)

    def residual(self, x: Tensor) -> Tensor:
        """``r(x)``, ``(B, D) -> (B, D)``: the residual branch alone, ``f(x) = x + r(x)``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.residual")
        return self.net(x)

    def jacobian(self, x: Tensor) -> Tensor:
        """``J_r(x) = ∂r/∂x`` per sample by autograd, ``(B, D) -> (B, D, D)``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.jacobian")
        parameters = self.net.weights_and_biases()
        differentiable = _needs_graph(x, parameters)
        with torch.enable_grad():
            x_in = x.clone() if x.requires_grad else x.detach().requires_grad_(True)
            r_out = self.net.apply(x_in, parameters)
            jacobian = residual_jacobian(x_in, r_out, differentiable)
        return jacobian if differentiable else jacobian.detach()

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
            r_out = self.net.apply(x_in, parameters)
            log_det = log_det_estimate(
                x_in,
                r_out,
                method=method,
                n_terms=n_terms,
                noise=self.hutchinson_noise,
                roulette_p=self.roulette_p,
                roulette_min_terms=self.roulette_min_terms,
                create_graph=differentiable,
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
            self.net.weights_and_biases(),
            method=self.log_det_mode if method is None else method,
            n_terms=self.n_terms if n_terms is None else n_terms,
        )
        return log_det

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = x + r(x) (B, D), log det(I + J_r(x)) (B,))``."""
        validate_batch(x, (self.dim,), where="InvertibleResidual.forward")
        return self._forward_with(
            x, self.net.weights_and_biases(), method=self.log_det_mode, n_terms=self.n_terms
        )

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -log det(I + J_r(x)) (B,))`` by fixed-point iteration.

        Raises:
            FixedPointConvergenceError: some sample has not converged in ``inverse_max_iter``
                iterations.
        """
        validate_batch(z, (self.dim,), where="InvertibleResidual.inverse", name="z")
        parameters = self.net.weights_and_biases()
        frozen = [(weight.detach(), bias.detach()) for weight, bias in parameters]
        tol = self.inverse_tol if self.inverse_tol is not None else default_tolerance(z.dtype)
        x_star = self._fixed_point(z.detach(), frozen, tol)
        if _needs_graph(z, parameters):
            x = z - self.net.apply(x_star, parameters)
            x.register_hook(self._adjoint_hook(x_star, frozen, tol))
        else:
            x = z.detach() - self.net.apply(x_star, frozen)
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
            residual = x + self.net.apply(x, parameters) - z
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
            r_point = self.net.apply(point, parameters)

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
        return f"dim={self.dim}, log_det={self.log_det_mode!r}"
