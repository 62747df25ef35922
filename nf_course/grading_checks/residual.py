"""Assignment 07, invertible residual flows (``solutions/07_residual``; book chapter 6): spectral
normalization by power iteration, the fixed-point inverse and the power series of the log-det.

Every check compares the student's function with the scheme the assignment states, evaluated
here in float64 on inputs no shortcut gets right by accident: one or two power iterations from a
cold start (an exact SVD or a fixed iteration count gives other values), batches mixing tiny and
far points (a mean or relative stopping rule stops too early), non-triangular Jacobians (an
elementwise power has the right diagonal there), and derivatives against the reference's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nf_course.bijectors import InvertibleResidual
from nf_course.checks import perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, call_student, check_close, randn

Residual = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------- spectral norm


def _unit(size: int, seed: int) -> Tensor:
    vector = randn(size, seed=seed)
    return vector / vector.norm()


def _matrix(rows: int, cols: int, singular_values: list[float], seed: int) -> Tensor:
    """A ``(rows, cols)`` matrix with the given singular values and random singular vectors."""
    left, _ = torch.linalg.qr(randn(rows, len(singular_values), seed=seed))
    right, _ = torch.linalg.qr(randn(cols, len(singular_values), seed=seed + 1))
    return left @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ right.T


def _spectral_reference(
    weight: Tensor, u: Tensor, bound: float, n_iterations: int, *, through_iteration: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """``(W̃, σ̂, final u)`` as the assignment defines them; ``through_iteration`` also
    differentiates through the power iteration (a mistake, used only to name it)."""
    with torch.set_grad_enabled(through_iteration and torch.is_grad_enabled()):
        for _ in range(n_iterations):
            v = torch.nn.functional.normalize(weight.T @ u, dim=0)
            u = torch.nn.functional.normalize(weight @ v, dim=0)
    sigma = u @ weight @ v
    return weight / torch.clamp(sigma / bound, min=1.0), sigma, u.detach()


def _spectral_call(
    spectral_normalize: Callable[..., Tensor],
    weight: Tensor,
    u: Tensor,
    bound: float,
    n_iterations: int,
    setting: str,
) -> Tensor:
    """Call the student's function and check that it left ``weight`` untouched."""
    before = weight.detach().clone()
    got = call_student(
        f"spectral_normalize({setting}, n_iterations={n_iterations})",
        spectral_normalize,
        weight,
        u,
        bound,
        n_iterations,
    )
    if not torch.equal(weight.detach(), before):
        raise GradingCheckError(
            f"spectral_normalize modified the weight it was given ({setting}): return a new "
            "tensor W̃ and leave W as it is (it is the layer's parameter)"
        )
    return got


def _check_spectral_values(spectral_normalize: Callable[..., Tensor]) -> None:
    """From a cold start, 1, 2, 1, 3 then 200 iterations, each call warm-started by the last."""
    cases = (  # rows, cols, singular values, bound
        (3, 6, [2.0, 1.7, 0.4], 0.7),
        (7, 2, [0.5, 0.1], 0.95),
        (6, 6, [1.3, 1.1, 0.9, 0.5, 0.3, 0.1], 0.5),
        (4, 3, [3.0, 2.9, 0.2], 0.9),
    )
    for index, (rows, cols, values, bound) in enumerate(cases):
        weight = _matrix(rows, cols, values, seed=100 + 10 * index)
        u = _unit(rows, seed=105 + 10 * index)
        expected_u = u.clone()
        setting = f"a {rows}x{cols} W with σ(W) = {values[0]}, c = {bound}"
        for call, n_iterations in enumerate((1, 2, 1, 3, 200)):
            expected, _, expected_u = _spectral_reference(weight, expected_u, bound, n_iterations)
            before = u.clone()
            got = _spectral_call(spectral_normalize, weight, u, bound, n_iterations, setting)
            if torch.equal(u, before):
                raise GradingCheckError(
                    f"spectral_normalize left u unchanged ({setting}): write the last iterate "
                    "into the tensor u it was given, in place (u.copy_(...))"
                )
            start = "the given u" if call == 0 else f"the u left by {call} earlier calls"
            what = f"{setting}, n_iterations = {n_iterations}, starting from {start}"
            check_close(got, expected, what=f"W̃ for {what}", atol=1e-10)
            check_close(
                u,
                expected_u,
                what=f"u after the call for {what} (the last iterate, written into u in place)",
                atol=1e-10,
            )


_IN_PLACE_HINT = (
    " (a tensor the graph needs was changed in place: with the power iteration under "
    "torch.no_grad(), u and v are constants and u.copy_ is harmless)"
)


def _gradient_in_weight(
    normalize: Callable[[Tensor], object], weight: Tensor, outer: Tensor, setting: str
) -> Tensor:
    """``∂⟨outer, normalize(W)⟩/∂W`` at ``weight``, by autograd."""
    leaf = weight.clone().requires_grad_(True)
    with torch.enable_grad():
        result = normalize(leaf)
        if not isinstance(result, Tensor) or not result.requires_grad:
            raise GradingCheckError(
                f"W̃ carries no gradient with respect to W ({setting}): compute σ̂ = uᵀWv and W̃ "
                "outside torch.no_grad(), without .item(), float() or .detach()"
            )
        try:
            (gradient,) = torch.autograd.grad((result * outer).sum(), leaf)
        except RuntimeError as error:
            in_place = "inplace" in str(error) or "in-place" in str(error)
            raise GradingCheckError(
                f"autograd cannot differentiate W̃ with respect to W ({setting}): {error}"
                f"{_IN_PLACE_HINT if in_place else ''}"
            ) from None
    return gradient


def _check_spectral_gradient(
    spectral_normalize: Callable[..., Tensor],
    rows: int,
    cols: int,
    values: list[float],
    bound: float,
) -> None:
    """∂⟨G, W̃⟩/∂W after 2 iterations from a cold start, with ``u``, ``v`` held constant."""
    weight = _matrix(rows, cols, values, seed=rows + cols)
    u = _unit(rows, seed=7 * rows)
    outer = randn(rows, cols, seed=rows * cols)
    setting = f"a {rows}x{cols} W with σ(W) = {values[0]}, c = {bound}, n_iterations = 2"
    found = _gradient_in_weight(
        lambda w: _spectral_call(spectral_normalize, w, u.clone(), bound, 2, setting),
        weight,
        outer,
        setting,
    )
    expected = _gradient_in_weight(
        lambda w: _spectral_reference(w, u.clone(), bound, 2)[0], weight, outer, setting
    )
    if torch.allclose(found, expected, rtol=1e-6, atol=1e-9):
        return
    through_iteration = _gradient_in_weight(
        lambda w: _spectral_reference(w, u.clone(), bound, 2, through_iteration=True)[0],
        weight,
        outer,
        setting,
    )
    _, sigma, _ = _spectral_reference(weight, u.clone(), bound, 2)
    if torch.allclose(found, through_iteration, rtol=1e-6, atol=1e-9):
        cause = (
            "it flows through the power iteration; run the iteration under torch.no_grad(), so "
            "that u and v are constants in σ̂ = uᵀWv"
        )
    elif torch.allclose(found, outer / torch.clamp(sigma / bound, min=1.0)):
        cause = "σ̂ is treated as a constant; compute σ̂ = uᵀWv outside torch.no_grad()"
    else:
        cause = "W̃ = W / max(1, σ̂/c) must be differentiated through σ̂ = uᵀWv in W"
    raise GradingCheckError(f"the gradient of W̃ with respect to W is wrong ({setting}): {cause}")


def check_spectral_normalize(spectral_normalize: Callable[..., Tensor]) -> None:
    """``spectral_normalize(weight, u, bound, n_iterations)``: exactly ``n_iterations`` power
    steps from the given ``u`` (kept in place), ``W̃ = W/max(1, σ̂/c)`` with ``σ̂ = uᵀWv``,
    differentiable in ``W`` alone, on wide, tall and square matrices; ``W`` left untouched."""
    _check_spectral_values(spectral_normalize)
    # Above the bound (σ̂ enters W̃) and below it (W̃ = W).
    _check_spectral_gradient(spectral_normalize, 5, 3, [2.5, 1.0, 0.3], 0.8)
    _check_spectral_gradient(spectral_normalize, 3, 4, [0.6, 0.2, 0.1], 0.9)


# ----------------------------------------------------------------------------- fixed point


class _CountedResidual:
    """A residual map that counts its calls and stops a loop that goes on far too long.

    Past ``limit`` calls it raises :class:`GradingCheckError` with ``explain(x)``, ``x`` being
    the input of that call.
    """

    def __init__(self, residual: Residual, limit: int, explain: Callable[[Tensor], str]) -> None:
        self.residual = residual
        self.limit = limit
        self.explain = explain
        self.calls = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls > self.limit:
            raise GradingCheckError(
                f"fixed_point_inverse evaluated the residual map more than {self.limit} times "
                f"{self.explain(x)}"
            )
        return self.residual(x)


def _stops_too_late(
    residual: Residual, z: Tensor, given: Tensor, tol: float, needed: int
) -> Callable[[Tensor], str]:
    """What to tell a student whose iteration at ``z`` goes on far longer than ``needed``
    (``given`` is the tensor the student received, a copy of ``z``)."""

    def explain(x: Tensor) -> str:
        where = f"(the iteration x ← z - r(x) from x = z needs {needed})"
        if not torch.equal(given, z):
            return f"{where}, and z was overwritten meanwhile: iterate on a copy of z"
        if x.shape != z.shape:
            return f"{where}: does it stop as soon as max |x + r(x) - z| ≤ tol?"
        with torch.no_grad():
            error = (x + residual(x) - z).abs().max().item()
        if error <= tol:
            return f"{where}, and went on after max |x + r(x) - z| ≤ tol: stop there"
        return (
            f"{where}, and max |x + r(x) - z| is still {error:.3g} > tol: check the update "
            "(the fixed point of x ← z - r(x) solves x + r(x) = z)"
        )

    return explain


def _residual_layer(dim: int, lipschitz: float, seed: int) -> InvertibleResidual:
    """The package's i-ResNet block with perturbed weights, each ``‖W̃‖₂ ≤ lipschitz``."""
    layer = InvertibleResidual(dim, hidden=16, layers=2, lipschitz=lipschitz, seed=seed)
    return perturb_parameters(layer, seed=seed + 1)


def _reference_calls(residual: Residual, z: Tensor, tol: float) -> int:
    """How many evaluations of ``residual`` the assignment's iteration needs at ``z``."""
    with torch.no_grad():
        x = z.clone()
        for calls in range(1, 10_000):
            r_x = residual(x)
            if float((x + r_x - z).abs().max()) <= tol:
                return calls
            x = z - r_x
    raise AssertionError("the reference iteration did not converge")  # pragma: no cover


def _mixed_points(batch: int, dim: int, seed: int) -> Tensor:
    """Points at very different distances from 0 (one of them exactly 0): ``(batch, dim)``."""
    scales = torch.logspace(-2, 1, batch, dtype=torch.float64).unsqueeze(1)
    z = scales * randn(batch, dim, seed=seed)
    z[batch // 2] = 0.0
    return z


def _check_converges(fixed_point_inverse: Callable[..., Tensor]) -> None:
    for dim, batch, lipschitz, seed in ((4, 16, 0.95, 31), (1, 1, 0.6, 41), (3, 3, 0.9, 51)):
        layer = _residual_layer(dim, lipschitz, seed)
        z = _mixed_points(batch, dim, seed + 2) if batch > 1 else randn(1, 1, seed=seed + 2)
        tol = 1e-12
        with torch.no_grad():
            expected = layer.inverse(z)[0]
        needed = _reference_calls(layer.residual, z, tol)
        given = z.clone()
        explain = _stops_too_late(layer.residual, z, given, tol, needed)
        counted = _CountedResidual(layer.residual, 2 * needed + 4, explain)
        setting = f"D = {dim}, B = {batch}, tol = {tol:g}, max_iter = 100000"
        x = call_student(
            f"fixed_point_inverse ({setting})", fixed_point_inverse, counted, given, tol, 100_000
        )
        check_close(given, z, what=f"z after fixed_point_inverse ({setting}; keep it)", atol=0)
        if not isinstance(x, Tensor) or x.shape != z.shape:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise GradingCheckError(
                f"fixed_point_inverse returned {shape} ({setting}), expected a tensor of shape "
                f"{tuple(z.shape)}"
            )
        with torch.no_grad():
            error = (x + layer.residual(x) - z).abs().max().item()
        rounding = 8 * torch.finfo(z.dtype).eps * max(1.0, z.abs().max().item())
        if not error <= tol + rounding:
            raise GradingCheckError(
                f"fixed_point_inverse returned an x with max |x + r(x) - z| = {error:.3g} > tol "
                f"= {tol:g} ({setting}, points from 0 to far away): stop only when the largest "
                "entry over the whole batch is within tol"
            )
        check_close(x, expected, what=f"x = f⁻¹(z) ({setting})", inputs=z, atol=1e-9)


def _check_raises(fixed_point_inverse: Callable[..., Tensor]) -> None:
    layer = _residual_layer(3, 0.9, seed=61)
    z = 3 * randn(8, 3, seed=62)
    cases = (
        ("a contraction and tol = 1e-12", layer.residual, 4),
        ("r(x) = -1.5 x (no contraction)", lambda x: -1.5 * x, 60),
        ("r(x) = -3 x, whose iterates overflow to inf and NaN", lambda x: -3.0 * x, 2000),
    )
    for name, residual, max_iter in cases:
        given = z.clone()
        counted = _CountedResidual(
            residual, 2 * max_iter + 4, lambda _, m=max_iter: f"with max_iter = {m}: stop there"
        )
        try:
            result = fixed_point_inverse(counted, z, 1e-12, max_iter)
        except RuntimeError:
            check_close(z, given, what=f"z after fixed_point_inverse ({name})", atol=0)
            continue
        except GradingCheckError:
            raise
        except Exception as error:
            raise GradingCheckError(
                f"fixed_point_inverse ({name}) raised {type(error).__name__}: {error}; expected "
                "a RuntimeError saying that the iteration did not converge"
            ) from error
        shown = (
            f"x with largest |x| = {result.abs().max().item():.3g}"
            if isinstance(result, Tensor)
            else repr(result)
        )
        raise GradingCheckError(
            f"fixed_point_inverse returned {shown} for {name} with max_iter = {max_iter}: it "
            "must raise a RuntimeError when max_iter steps do not reach tol"
            + (" (a NaN error is never within tol)" if "NaN" in name else "")
        )


def _check_no_residual(fixed_point_inverse: Callable[..., Tensor]) -> None:
    """``r = 0``: ``x = z`` already solves the equation."""
    z = randn(5, 2, seed=71)
    counted = _CountedResidual(
        torch.zeros_like, 4, lambda _: "for r(x) = 0, where x = z already solves x + r(x) = z"
    )
    x = call_student("fixed_point_inverse (r(x) = 0)", fixed_point_inverse, counted, z, 1e-12, 50)
    check_close(x, z, what="x for r(x) = 0 (x = z solves x + r(x) = z)")


def check_fixed_point_inverse(fixed_point_inverse: Callable[..., Tensor]) -> None:
    """``fixed_point_inverse(residual, z, tol, max_iter)``: the largest residual over the batch
    within ``tol`` (points from 0 to far away), the package's inverse, no iteration after
    convergence, ``z`` untouched, and a ``RuntimeError`` when ``max_iter`` steps do not reach
    ``tol`` (also when the iterates overflow to NaN)."""
    _check_converges(fixed_point_inverse)
    _check_no_residual(fixed_point_inverse)
    _check_raises(fixed_point_inverse)


# ----------------------------------------------------------------------------- series


def _series_reference(jacobian: Tensor, n_terms: int) -> Tensor:
    """``Σ_{k≤n} (-1)^{k+1} tr(J^k)/k`` per sample, by ``matrix_power``: ``(B,)``."""
    terms = [
        (-1) ** (k + 1) * torch.linalg.matrix_power(jacobian, k).diagonal(dim1=1, dim2=2).sum(1) / k
        for k in range(1, n_terms + 1)
    ]
    return torch.stack(terms, dim=1).sum(dim=1)


def _jacobians() -> dict[str, Tensor]:
    """Jacobians ``(B, D, D)`` with ``‖J‖₂ < 1``, none of them triangular or symmetric."""
    layer = perturb_parameters(InvertibleResidual(5, hidden=12, lipschitz=0.8, seed=61), seed=62)
    x = randn(10, 5, seed=63)
    square = randn(4, 4, 4, seed=64)
    square = 0.8 * square / torch.linalg.matrix_norm(square, ord=2).reshape(4, 1, 1)
    return {
        "a package layer's J (B = 10, D = 5)": layer.jacobian(x).detach(),
        "J = [[0.7]] (B = 1, D = 1)": torch.full((1, 1, 1), 0.7, dtype=torch.float64),
        "random J with ‖J‖₂ = 0.8 (B = D = 4)": square,
    }


def check_series_log_det(series_log_det: Callable[[Tensor, int], Tensor]) -> None:
    """``series_log_det(jacobian, n_terms)``: the ``n``-term series for ``n = 1 … 25`` on
    generic Jacobians (``B = D`` and ``B = D = 1`` included), differentiable in ``J``."""
    jacobians = _jacobians()
    for name, jacobian in jacobians.items():
        for n_terms in (1, 2, 3, 9, 25):
            got = call_student(
                f"series_log_det({name}, {n_terms})", series_log_det, jacobian, n_terms
            )
            expected = _series_reference(jacobian, n_terms)
            check_close(got, expected, what=f"the {n_terms}-term series for {name}", atol=1e-10)
    jacobian = jacobians["random J with ‖J‖₂ = 0.8 (B = D = 4)"].clone().requires_grad_(True)
    weights = randn(4, seed=65)
    with torch.enable_grad():
        got = call_student("series_log_det (J requiring grad)", series_log_det, jacobian, 4)
        if not isinstance(got, Tensor) or not got.requires_grad:
            raise GradingCheckError(
                "the series carries no gradient with respect to J: the log-det is trained "
                "through, so build it from J without .item(), float(), .detach() or "
                "torch.no_grad()"
            )
        (gradient,) = torch.autograd.grad((got * weights).sum(), jacobian)
        (expected,) = torch.autograd.grad(
            (_series_reference(jacobian, 4) * weights).sum(), jacobian
        )
    check_close(gradient, expected, what="the gradient of the 4-term series with respect to J")
