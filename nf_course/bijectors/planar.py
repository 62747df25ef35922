"""Planar, Sylvester and radial flows: residual maps whose log-determinant is cheap by the
matrix determinant lemma (:class:`Planar`, :class:`Sylvester`, :class:`Radial`).

Chapter: ``book/05_planar_sylvester.md`` (Rezende and Mohamed 2015; van den Berg et al. 2018);
tests: ``tests/test_planar.py``; assignment: ``solutions/03_planar``; benchmark:
``benchmarks/planar_energies.py`` (reverse-KL fits to U1-U4). The lectures (Isachenko, Ozon
Masters 2022; Grover, UCLA 2019; Yang and Ryu 2020) write the planar map in the generative
direction; here it is ``forward``, so their flow is ``nf_course.Inverse(Planar(dim))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nf_course.common import default_tolerance, positive_float, positive_int, validate_batch
from nf_course.core import Bijector

__all__ = ["Planar", "Radial", "Sylvester"]

# m(a) = -1 + softplus(a) vanishes at a = log(e - 1).
_M_ZERO = math.log(math.e - 1)


def _m(a: Tensor) -> Tensor:
    """``m(a) = -1 + softplus(a)``, an increasing map of ``ℝ`` onto ``(-1, ∞)``."""
    return F.softplus(a) - 1


def _log_slope(a: Tensor, pre: Tensor) -> Tensor:
    """``log(1 + m(a) h'(pre))`` with ``h = tanh``, written as ``log(tanh² + softplus(a) sech²)``.

    Both terms are non-negative, so nothing cancels when ``m(a)`` is close to -1: the direct
    form rounds ``m(a) = softplus(a) - 1`` to exactly -1 once ``a < -37`` in float64 and gives
    ``log 0 = -inf`` on the hyperplane ``pre = 0``, where the true value is ``log softplus(a)``.
    """
    tanh_sq = torch.tanh(pre).square()
    return torch.log(tanh_sq + F.softplus(a) * (1 - tanh_sq))


def _check_options(tol: float | None, max_iter: int, where: str) -> None:
    if tol is not None:
        positive_float(tol, "tol", where)
    positive_int(max_iter, "max_iter", where)


def _solve_increasing(
    c: Tensor,
    k: Tensor,
    beta: Tensor,
    gamma: Tensor,
    *,
    tol: float,
    max_iter: int,
    where: str,
) -> Tensor:
    """Solve ``t + c tanh(k t + β) = γ`` for ``t``, elementwise, without autograd.

    Requires ``c k > -1`` so that the left side is increasing; the root lies in
    ``[γ - |c|, γ + |c|]``. Safeguarded Newton (``rtsafe`` of Numerical Recipes): the Newton step
    when it lands strictly inside the current bracket and the residual is falling fast enough
    (``|2 residual| ≤ |slope · step before last|``), the midpoint otherwise, so that a nearly
    flat left side (``c k`` close to -1), where Newton steps can cycle inside the bracket, still
    converges at least as fast as bisection; the bracket is updated with the sign of the
    residual. An equation, once converged, is no longer updated.

    Args:
        c, k, beta, gamma: tensors broadcastable to the batch shape ``(B,)``.
        tol: stop once the last step or the bracket is below ``tol · max(1, |t|)``.
        max_iter: the iteration cap.
        where: the method named in the error.

    Returns:
        ``t``, shape ``(B,)``, detached.

    Raises:
        RuntimeError: some equation has not converged after ``max_iter`` iterations.
    """
    with torch.no_grad():
        c, k, beta, gamma = torch.broadcast_tensors(c, k, beta, gamma)
        low, high = gamma - c.abs(), gamma + c.abs()
        t = gamma.clone()
        done = c == 0
        step = step_before = high - low
        for _ in range(max_iter):
            tanh = torch.tanh(k * t + beta)
            residual = t + c * tanh - gamma
            slope = 1 + c * k * (1 - tanh.square())
            low = torch.where(residual < 0, t, low)
            high = torch.where(residual > 0, t, high)
            newton = t - residual / slope
            # A step too small to change t is a converged Newton step, not a bracket violation.
            inside = ((newton > low) & (newton < high)) | (newton == t)
            fast = (2 * residual).abs() <= (step_before * slope).abs()
            t_next = torch.where(inside & fast, newton, (low + high) / 2)
            step_before, step = step, t_next - t
            scale = torch.clamp(t_next.abs(), min=1.0)
            converged = ((t_next - t).abs() <= tol * scale) | (high - low <= tol * scale)
            t = torch.where(done, t, t_next)
            done = done | converged
            if bool(done.all()):
                return t
    worst = (high - low).masked_fill(done, 0).max().item()
    raise RuntimeError(
        f"{where}: the numeric inverse did not converge in max_iter={max_iter} iterations "
        f"(relative tolerance {tol:g}; {int((~done).sum())} of {done.numel()} equations "
        f"unfinished, widest remaining bracket {worst:.3g}); pass a larger max_iter, a larger "
        "tol, or check the input for inf or NaN"
    )


class Planar(Bijector):
    r"""Planar flow ``z = x + û tanh(wᵀx + b)`` in the forward (data → noise) direction.

    ``forward`` and its log-det ``log|1 + ûᵀψ(x)|``, ``ψ = h'(wᵀx + b) w``, are closed-form,
    ``O(D)`` per sample; ``inverse`` solves for ``α = wᵀx`` numerically. For reverse-KL fits,
    where sampling with density must be cheap, use ``nf_course.Inverse(Planar(dim))``: its
    generative direction is this closed-form map, the planar flow of Rezende and Mohamed; for
    maximum likelihood use ``Planar`` itself. ``wᵀû`` is computed as ``m(wᵀu)`` directly, so
    rounding never pushes it below -1.

    Inverse: with ``γ = wᵀz`` and ``c = wᵀû``, ``α`` solves ``α + c tanh(α + b) = γ``, an
    increasing scalar equation whose root lies in ``[γ - |c|, γ + |c|]`` (``|tanh| ≤ 1``). It
    is solved without autograd by safeguarded Newton (:func:`_solve_increasing`), ``O(D)`` per
    sample and iteration, until the step or the bracket is below ``tol · max(1, |α|)``; then
    ``x = z - û tanh(α + b)``. One last Newton step on the differentiable equation gives the
    exact gradients (implicit function theorem) for one more evaluation. The inverse log-det
    is minus the forward one at the recovered ``x``.

    Initialization (generator seeded with ``seed``): ``w ~ N(0, I/D)``, so ``‖w‖ ≈ 1``;
    ``u = log(e-1) w/‖w‖² + 0.01 ε``, the point where ``m(wᵀu) = 0`` and hence ``û ≈ 0``, so the
    map starts near, but not at, the identity; ``b = 0.01 ε``.

    Args:
        dim: the dimension ``D``.
        seed: seed of the initial parameters.
        tol: relative tolerance of the inverse's root finding; ``None``:
            :func:`nf_course.common.default_tolerance` of the input's dtype (``1e-12`` in float64).
        max_iter: iteration cap of the root finding (bisection alone needs about 47
            iterations to reach ``1e-12`` on a bracket of width 100); more raises a
            :class:`RuntimeError`.

    Attributes:
        w: ``(D,)`` parameter, the normal of the hyperplane.
        u: ``(D,)`` parameter, mapped to ``û`` (:meth:`u_hat`) with ``wᵀû > -1``.
        b: ``()`` parameter, the offset.
    """

    def __init__(
        self, dim: int, *, seed: int = 0, tol: float | None = None, max_iter: int = 100
    ) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", "Planar")
        _check_options(tol, max_iter, "Planar")
        self.tol = tol
        self.max_iter = max_iter
        generator = torch.Generator().manual_seed(seed)
        w = torch.randn(dim, generator=generator, dtype=torch.float64) / math.sqrt(dim)
        u = _M_ZERO * w / w.dot(w) + 0.01 * torch.randn(
            dim, generator=generator, dtype=torch.float64
        )
        b = 0.01 * torch.randn((), generator=generator, dtype=torch.float64)
        dtype = torch.get_default_dtype()
        self.w = nn.Parameter(w.to(dtype))
        self.u = nn.Parameter(u.to(dtype))
        self.b = nn.Parameter(b.to(dtype))

    def w_u_hat(self) -> Tensor:
        """``wᵀû = m(wᵀu)``, shape ``()``, always ``> -1``."""
        return _m(self.w.dot(self.u))

    def u_hat(self) -> Tensor:
        """``û = u + (m(wᵀu) - wᵀu) w/‖w‖²``, shape ``(D,)``."""
        w_u = self.w.dot(self.u)
        return self.u + (_m(w_u) - w_u) * self.w / self.w.dot(self.w)

    def _log_det(self, alpha: Tensor) -> Tensor:
        """``log(1 + wᵀû h'(α + b))`` for ``α = wᵀx`` of shape ``(B,)``: ``(B,)``."""
        return _log_slope(self.w.dot(self.u), alpha + self.b)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = x + û tanh(wᵀx + b) (B, D), log|1 + ûᵀψ(x)| (B,))``."""
        validate_batch(x, (self.dim,), where="Planar.forward")
        alpha = x @ self.w
        z = x + torch.tanh(alpha + self.b).unsqueeze(1) * self.u_hat()
        return z, self._log_det(alpha)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -log|1 + ûᵀψ(x)| (B,))`` by root finding along ``w``."""
        validate_batch(z, (self.dim,), where="Planar.inverse", name="z")
        c = self.w_u_hat()
        gamma = z @ self.w
        alpha = _solve_increasing(
            c.detach(),
            torch.ones((), dtype=z.dtype, device=z.device),
            self.b.detach(),
            gamma.detach(),
            tol=self.tol if self.tol is not None else default_tolerance(z.dtype),
            max_iter=self.max_iter,
            where="Planar.inverse",
        )
        # One differentiable Newton step from the root: exact gradients by the implicit
        # function theorem.
        tanh = torch.tanh(alpha + self.b)
        slope = torch.exp(_log_slope(self.w.dot(self.u), alpha + self.b))
        alpha = alpha - (alpha + c * tanh - gamma) / slope
        x = z - torch.tanh(alpha + self.b).unsqueeze(1) * self.u_hat()
        return x, -self._log_det(alpha)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Sylvester(Bijector):
    r"""Sylvester flow ``z = x + Q R tanh(R̃ Qᵀ x + b)`` in the forward (data → noise) direction.

    ``Q`` is ``D × m`` with orthonormal columns, ``R`` and ``R̃`` are ``m × m`` upper
    triangular with ``R_ii = exp(ρ_i)`` and ``R̃_ii = m(a_i) exp(-ρ_i)``, so that
    ``R_ii R̃_ii = m(a_i) > -1`` and the map is invertible (van den Berg et al. bound both
    diagonals with ``tanh`` instead, which caps ``|R_ii R̃_ii|`` at one). ``Q`` is the first
    ``m`` columns of a product of ``m`` Householder reflections, orthonormal up to rounding for
    every parameter value. ``forward`` and its log-det ``Σ_i log(1 + R_ii R̃_ii h'_i)`` are
    closed-form, ``O(Dm + m²)`` per sample plus ``O(Dm²)`` per call to build ``Q``. For
    reverse-KL fits use ``nf_course.Inverse(Sylvester(dim))``, as for :class:`Planar`.

    Inverse: the part of ``x`` orthogonal to the columns of ``Q`` is that of ``z``, and
    ``y = Qᵀx`` solves ``y + R tanh(R̃ y + b) = Qᵀz``, where ``y_i`` appears only in rows
    ``≤ i``. The rows are solved from ``i = m`` down to 1, each a scalar equation of the planar
    form ``y_i + R_ii tanh(R̃_ii y_i + β_i) = γ_i``, by the safeguarded Newton of
    :class:`Planar`, followed by one differentiable Newton step on the whole system for the
    gradients; ``m`` sequential scalar solves in all.

    Initialization (generator seeded with ``seed``): the Householder vectors ``V`` standard
    normal, so ``Q`` is a random orthonormal frame; ``R`` with unit diagonal (``ρ = 0``) and
    strictly upper part ``0.01 ε``; ``R̃`` with diagonal ``m(a) ≈ 0`` (``a = log(e-1) + 0.01 ε``)
    and strictly upper part ``0.01 ε``; ``b = 0.01 ε``. The map starts near the identity.

    Args:
        dim: the dimension ``D``.
        m: the number of hidden units, ``1 ≤ m ≤ D`` (default ``D``).
        seed: seed of the initial parameters.
        tol: relative tolerance of the inverse's scalar solves; ``None``:
            :func:`nf_course.common.default_tolerance` of the input's dtype (``1e-12`` in float64).
        max_iter: iteration cap of each scalar solve; more raises a :class:`RuntimeError`.

    Attributes:
        V: ``(D, m)`` parameter; column ``i`` below row ``i`` is the Householder vector
            ``v_i`` (with ``v_i[i] = 1``, zeros above); the rest is unused.
        R: ``(m, m)`` parameter of which only the strictly upper triangle is used.
        log_r: ``(m,)`` parameter ``ρ``, ``R_ii = exp(ρ_i)``.
        R_tilde: ``(m, m)`` parameter of which only the strictly upper triangle is used.
        a: ``(m,)`` parameter, ``R_ii R̃_ii = m(a_i)``.
        b: ``(m,)`` parameter, the offsets.
    """

    def __init__(
        self,
        dim: int,
        *,
        m: int | None = None,
        seed: int = 0,
        tol: float | None = None,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", "Sylvester")
        hidden = dim if m is None else positive_int(m, "m", "Sylvester")
        if hidden > dim:
            raise ValueError(f"Sylvester: m must be at most dim = {dim}, got {hidden}")
        _check_options(tol, max_iter, "Sylvester")
        self.m = hidden
        self.tol = tol
        self.max_iter = max_iter
        generator = torch.Generator().manual_seed(seed)

        def noise(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, dtype=torch.float64)

        dtype = torch.get_default_dtype()
        self.V = nn.Parameter(noise(dim, hidden).to(dtype))
        self.R = nn.Parameter(torch.triu(0.01 * noise(hidden, hidden), diagonal=1).to(dtype))
        self.log_r = nn.Parameter(torch.zeros(hidden, dtype=dtype))
        self.R_tilde = nn.Parameter(torch.triu(0.01 * noise(hidden, hidden), diagonal=1).to(dtype))
        self.a = nn.Parameter((_M_ZERO + 0.01 * noise(hidden)).to(dtype))
        self.b = nn.Parameter((0.01 * noise(hidden)).to(dtype))

    def q(self) -> Tensor:
        """``Q = H_1 ⋯ H_m I[:, :m]``, ``(D, m)`` with orthonormal columns.

        ``H_i = I - τ_i v_i v_iᵀ`` with ``τ_i = 2/‖v_i‖²`` is a reflection for every ``V``.
        """
        eye = torch.eye(self.dim, self.m, dtype=self.V.dtype, device=self.V.device)
        vectors = torch.tril(self.V, diagonal=-1) + eye
        tau = 2 / vectors.square().sum(dim=0)
        return torch.linalg.householder_product(vectors, tau)

    def diagonal_product(self) -> Tensor:
        """``R_ii R̃_ii = m(a_i)``, shape ``(m,)``, always ``> -1``."""
        return _m(self.a)

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(Q (D, m), R (m, m), R̃ (m, m))``."""
        r_diag = torch.exp(self.log_r)
        R = torch.triu(self.R, diagonal=1) + torch.diag(r_diag)
        R_tilde = torch.triu(self.R_tilde, diagonal=1) + torch.diag(
            self.diagonal_product() / r_diag
        )
        return self.q(), R, R_tilde

    def _log_det(self, pre: Tensor) -> Tensor:
        """``Σ_i log(1 + R_ii R̃_ii h'(pre_i))`` for pre-activations ``(B, m)``: ``(B,)``."""
        return _log_slope(self.a, pre).sum(dim=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = x + Q R tanh(R̃ Qᵀ x + b) (B, D), log-det (B,))``."""
        validate_batch(x, (self.dim,), where="Sylvester.forward")
        Q, R, R_tilde = self.factors()
        pre = (x @ Q) @ R_tilde.mT + self.b
        z = x + (torch.tanh(pre) @ R.mT) @ Q.mT
        return z, self._log_det(pre)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -log-det at x (B,))`` by back substitution in ``y = Qᵀx``."""
        validate_batch(z, (self.dim,), where="Sylvester.inverse", name="z")
        Q, R, R_tilde = self.factors()
        gamma = z @ Q
        tol = self.tol if self.tol is not None else default_tolerance(z.dtype)
        with torch.no_grad():
            R_, R_tilde_, b = R.detach(), R_tilde.detach(), self.b.detach()
            y = torch.zeros_like(gamma)
            pre = torch.zeros_like(gamma)
            for i in reversed(range(self.m)):
                # Row i: y_i + R_ii tanh(R̃_ii y_i + β_i) + Σ_{j>i} R_ij tanh(pre_j) = γ_i.
                beta = y[:, i + 1 :] @ R_tilde_[i, i + 1 :] + b[i]
                known = torch.tanh(pre[:, i + 1 :]) @ R_[i, i + 1 :]
                y[:, i] = _solve_increasing(
                    R_[i, i],
                    R_tilde_[i, i],
                    beta,
                    gamma[:, i] - known,
                    tol=tol,
                    max_iter=self.max_iter,
                    where="Sylvester.inverse",
                )
                pre[:, i] = R_tilde_[i, i] * y[:, i] + beta
        # One differentiable Newton step on y + R tanh(R̃ y + b) = γ from the root; its Jacobian
        # I + R diag(h') R̃ is upper triangular, with diagonal 1 + m(a_i) h'_i (cancellation-free).
        pre = y @ R_tilde.mT + self.b
        tanh = torch.tanh(pre)
        residual = y + tanh @ R.mT - gamma
        h_prime = (1 - tanh.square()).unsqueeze(1)
        jacobian = torch.triu((R * h_prime) @ R_tilde, diagonal=1) + torch.diag_embed(
            torch.exp(_log_slope(self.a, pre))
        )
        step = torch.linalg.solve_triangular(jacobian, residual.unsqueeze(2), upper=True)
        y = y - step.squeeze(2)
        pre = y @ R_tilde.mT + self.b
        x = z - (torch.tanh(pre) @ R.mT) @ Q.mT
        return x, -self._log_det(pre)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, m={self.m}"


class Radial(Bijector):
    r"""Radial flow ``z = x + β h(r) (x - x₀)``, ``h(r) = 1/(α + r)``, ``r = ‖x - x₀‖``.

    The other flow of Rezende and Mohamed (2015, appendix A.2), in the forward (data → noise)
    direction: it moves every point along the ray from the centre ``x₀``, so the Jacobian is
    ``(1 + βh) I + βh' (x - x₀)(x - x₀)ᵀ / r``, a rank-one update of a multiple of the identity,
    and

    .. math::

        \log\left|\det \frac{\partial z}{\partial x}\right|
        = (D - 1) \log\bigl(1 + \beta h(r)\bigr) + \log\bigl(1 + \beta h(r) + \beta h'(r)\, r\bigr),

    ``O(D)`` per sample. Along each ray the map is ``r ↦ r (1 + β/(α + r))``, with derivative
    ``1 + αβ/(α + r)²``: increasing for every ``r ≥ 0`` exactly when ``β ≥ -α`` (the invertibility
    condition). The parameters keep ``α = exp(log_alpha) > 0`` and ``β = -α + softplus(beta_raw)
    > -α``. With ``s = α + β = softplus(beta_raw)`` both factors are written without
    cancellation: ``1 + βh = (r + s)/(α + r)`` and ``1 + βh + βh'r = (r² + 2αr + αs)/(α + r)²``.

    ``inverse`` is closed-form: with ``ρ = ‖z - x₀‖`` the radius ``r`` solves
    ``r (r + s) = ρ (α + r)``, a quadratic whose non-negative root is taken in the form that
    avoids cancellation, and ``x = x₀ + (z - x₀)(α + r)/(r + s)``. Book: chapter 5; tests:
    ``tests/test_planar.py``.

    Initialization (generator seeded with ``seed``): ``x₀ ~ N(0, I)``, ``α = 1`` and
    ``softplus(beta_raw) = 1 + 0.01 ε``, so ``β ≈ 0`` and the map starts near, but not at, the
    identity.

    Args:
        dim: the dimension ``D``.
        seed: seed of the initial parameters.

    Attributes:
        x0: ``(D,)`` parameter, the centre.
        log_alpha: ``()`` parameter, ``log α``.
        beta_raw: ``()`` parameter, ``β = -α + softplus(beta_raw)``.
    """

    def __init__(self, dim: int, *, seed: int = 0) -> None:
        super().__init__()
        self.dim = positive_int(dim, "dim", "Radial")
        generator = torch.Generator().manual_seed(seed)
        x0 = torch.randn(dim, generator=generator, dtype=torch.float64)
        beta_raw = _M_ZERO + 0.01 * torch.randn((), generator=generator, dtype=torch.float64)
        dtype = torch.get_default_dtype()
        self.x0 = nn.Parameter(x0.to(dtype))
        self.log_alpha = nn.Parameter(torch.zeros((), dtype=dtype))
        self.beta_raw = nn.Parameter(beta_raw.to(dtype))

    def alpha_beta(self) -> tuple[Tensor, Tensor]:
        """``(α, β)``, scalars with ``α > 0`` and ``β > -α``."""
        alpha = torch.exp(self.log_alpha)
        return alpha, F.softplus(self.beta_raw) - alpha

    def _log_det(self, r: Tensor) -> Tensor:
        """``log|det ∂z/∂x|`` at radii ``r`` ``(B,)``: ``(B,)``."""
        alpha, s = torch.exp(self.log_alpha), F.softplus(self.beta_raw)
        log_radial = torch.log(r + s) - torch.log(alpha + r)
        log_along = torch.log(r.square() + 2 * alpha * r + alpha * s) - 2 * torch.log(alpha + r)
        return (self.dim - 1) * log_radial + log_along

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z = x + β (x - x₀)/(α + r) (B, D), log-det (B,))``."""
        validate_batch(x, (self.dim,), where="Radial.forward")
        alpha, beta = self.alpha_beta()
        offset = x - self.x0
        r = torch.linalg.vector_norm(offset, dim=1)
        z = x + (beta / (alpha + r)).unsqueeze(1) * offset
        return z, self._log_det(r)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), -log-det at x (B,))``, closed-form (class docstring)."""
        validate_batch(z, (self.dim,), where="Radial.inverse", name="z")
        alpha, s = torch.exp(self.log_alpha), F.softplus(self.beta_raw)
        offset = z - self.x0
        rho = torch.linalg.vector_norm(offset, dim=1)
        # Non-negative root of r² + (s - ρ) r - ρα = 0, without cancellation on either side.
        b = rho - s
        root = torch.sqrt(b.square() + 4 * rho * alpha)
        r = torch.where(b >= 0, (b + root) / 2, 2 * rho * alpha / (root - b))
        x = self.x0 + ((alpha + r) / (r + s)).unsqueeze(1) * offset
        return x, -self._log_det(r)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
