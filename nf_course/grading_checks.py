r"""Assignment-specific checks that the hidden tests of the graded notebooks call.

The hidden tests are one-line calls into this module, so the feedback students get shows what
failed (the message of :class:`GradingCheckError`) but never the test logic. Each check builds its
own seeded, float64 inputs, compares the student's code with a closed form or with
:mod:`nf_course.checks`, and raises with a message that names the property, the worst input, the
value found and the value expected.

Assignments and the lectures they follow (seed files of the course):

* 01 change of variables (Grover, lecture 7; Isachenko, lecture 5): 1D densities of transformed
  variables, :math:`\log p_X(x) = \log p_Z(f(x)) + \log|f'(x)|`, and the linear map
  :math:`x = Az + b`, :math:`\log p_X(x) = \log p_Z(A^{-1}(x - b)) - \log|\det A|`.
* 02 linear flows (Isachenko, lectures 5 and 3): a permutation and the LU-parametrized matrix
  :math:`W = PLU`, :math:`\log|\det W| = \sum_i \log|s_i|` in :math:`O(D)`.
* 03 planar flow (Rezende and Mohamed 2015; Isachenko, lecture 5): :math:`z = x + \hat u
  \tanh(w^T x + b)` with :math:`w^T \hat u > -1`, which needs the division by :math:`\|w\|^2`.

Costs: every check runs in well under a second on one CPU thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.checks import check_bijector, perturb_parameters

__all__ = [
    "GradingCheckError",
    "check_affine_bijector",
    "check_affine_log_density",
    "check_close",
    "check_exp_normal_log_density",
    "check_linear_log_density",
    "check_lu_linear",
    "check_permutation",
    "check_permutation_rejects_bad_input",
    "check_planar",
    "check_planar_adversarial",
    "perturb_parameters",
]


class GradingCheckError(AssertionError):
    """A graded property does not hold; the message says which, where and by how much."""


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_close(
    got: object,
    expected: Tensor,
    *,
    what: str,
    inputs: Tensor | None = None,
    atol: float = 1e-8,
    rtol: float = 1e-6,
) -> None:
    """Assert that ``got`` equals ``expected`` elementwise (``±inf`` must match exactly).

    Args:
        got: the student's value, expected to be a tensor of ``expected``'s shape.
        expected: the reference values.
        what: the quantity in words, e.g. ``"log p_X(x)"``.
        inputs: the inputs the values belong to, one per leading index (shown for the worst).
        atol, rtol: the tolerance ``atol + rtol·|expected|``.

    Raises:
        GradingCheckError: wrong type or shape, NaN, or a value out of tolerance.
    """
    if not isinstance(got, Tensor):
        raise GradingCheckError(f"{what} must be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        raise GradingCheckError(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        )
    got = got.detach().to(expected.dtype)
    both_inf = torch.isinf(got) & torch.isinf(expected) & (torch.sign(got) == torch.sign(expected))
    error = torch.where(both_inf, torch.zeros_like(got), (got - expected).abs())
    error = error.nan_to_num(math.inf)
    excess = error - (atol + rtol * expected.abs().nan_to_num(0.0, posinf=0.0, neginf=0.0))
    if bool((excess <= 0).all()):
        return
    flat = excess.reshape(-1).argmax()
    index = tuple(int(i) for i in torch.unravel_index(flat, excess.shape))
    where = ""
    if inputs is not None:
        point = inputs[index[0]]
        shown = f"{point.item():.6g}" if point.numel() == 1 else str(point.tolist())
        where = f" at input {shown}"
    found, wanted = got[index].item(), expected[index].item()
    hint = ""
    if math.isnan(found):
        hint = " (NaN: a log or a division applied outside its domain?)"
    raise GradingCheckError(
        f"{what} is wrong{where}: got {found:.8g}, expected {wanted:.8g}{hint} "
        f"({int((excess > 0).sum())} of {excess.numel()} values are off)"
    )


# ----------------------------------------------------------------------------- 01


def check_affine_log_density(affine_log_density: Callable[..., Tensor]) -> None:
    """``affine_log_density(x, scale, shift, base_log_prob)`` for Gaussian bases, any sign."""
    normal = torch.distributions.Normal(0.0, 1.0)
    x = torch.linspace(-6.0, 6.0, 41, dtype=torch.float64)
    for scale, shift in ((-2.5, 1.3), (0.4, -0.7), (-0.3, 0.0)):
        got = affine_log_density(x, scale, shift, normal.log_prob)
        expected = torch.distributions.Normal(shift, abs(scale)).log_prob(x)
        check_close(got, expected, what=f"log p_X(x) for X = {scale}·Z + {shift}", inputs=x)


def check_exp_normal_log_density(exp_normal_log_density: Callable[[Tensor], Tensor]) -> None:
    """Log-normal density: values, ``-inf`` (not NaN) for ``x ≤ 0``, total mass one."""
    x = torch.tensor([-3.0, -1e-3, 0.0, 1e-4, 0.03, 0.7, 1.0, 4.5, 30.0], dtype=torch.float64)
    expected = torch.full_like(x, -math.inf)
    positive = x > 0
    expected[positive] = torch.distributions.LogNormal(0.0, 1.0).log_prob(x[positive])
    check_close(exp_normal_log_density(x), expected, what="log p_X(x) for X = exp(Z)", inputs=x)
    grid = torch.linspace(1e-6, 60.0, 600_001, dtype=torch.float64)
    mass = torch.trapezoid(exp_normal_log_density(grid).exp(), grid).item()
    if abs(mass - 1.0) > 1e-3:
        raise GradingCheckError(f"p_X integrates to {mass:.6g} over (0, 60], expected 1")


def _affine_case(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A 3x3 matrix with a negative determinant, a shift and a batch of points."""
    A = _randn(3, 3, seed=seed) + 2 * torch.eye(3, dtype=torch.float64)
    if torch.linalg.det(A) > 0:
        A = A[[1, 0, 2]]
    return A, _randn(3, seed=seed + 1), 2 * _randn(32, 3, seed=seed + 2)


def check_affine_bijector(affine_bijector: Callable[[Tensor, Tensor], nn.Module]) -> None:
    """``AffineBijector(A, b)``: every bijector check, and ``forward`` is ``A⁻¹(x - b)``."""
    for seed in (11, 23):
        A, b, x = _affine_case(seed)
        layer = affine_bijector(A, b)
        check_bijector(layer, x, z=_randn(32, 3, seed=seed + 3))
        z, _ = layer.forward(x)
        expected = torch.linalg.solve(A, (x - b).T).T
        check_close(
            z, expected, what="forward(x) (the normalizing direction z = A⁻¹(x − b))", inputs=x
        )


def check_linear_log_density(linear_log_density: Callable[..., Tensor]) -> None:
    """``linear_log_density(x, A, b)`` against the Gaussian ``N(b, A Aᵀ)``."""
    for seed in (31, 47):
        A, b, x = _affine_case(seed)
        expected = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x)
        got = linear_log_density(x, A, b)
        check_close(got, expected, what="log p_X(x) for X = A Z + b", inputs=x)


# ----------------------------------------------------------------------------- 02


def check_permutation(permutation: Callable[[object], nn.Module]) -> None:
    """``Permutation(perm)``: ``forward`` is ``x[:, perm]``, every bijector check passes."""
    x = _randn(16, 6, seed=5)
    for perm in ([1, 2, 0, 5, 3, 4], [5, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [3, 0, 4, 1, 5, 2]):
        layer = permutation(perm)
        check_bijector(layer, x)
        z, _ = layer.forward(x)
        check_close(z, x[:, perm], what=f"forward(x) for perm = {perm} (z[:, i] = x[:, perm[i]])")


def check_permutation_rejects_bad_input(permutation: Callable[[object], nn.Module]) -> None:
    """A list that is not a permutation of ``0, …, D-1`` raises ``ValueError``."""
    for bad in ([0, 0, 1], [1, 2, 3], [0, 2], [-1, 0, 1]):
        try:
            permutation(bad)
        except ValueError:
            continue
        except Exception as exc:
            raise GradingCheckError(
                f"Permutation({bad}) raised {type(exc).__name__}; expected ValueError"
            ) from exc
        raise GradingCheckError(
            f"Permutation({bad}) was accepted, but {bad} is not a permutation of "
            f"0, …, {len(bad) - 1}: raise a ValueError"
        )


def check_lu_linear(linear_lu: Callable[..., nn.Module]) -> None:
    """``LinearLU(dim, seed=)``: ``W = P L U`` from the masked factors, log-det ``Σ log|s|``."""
    for dim, seed in ((3, 0), (6, 1)):
        layer = perturb_parameters(linear_lu(dim, seed=seed), seed=seed + 7, scale=0.3)
        x = _randn(24, dim, seed=seed + 8)
        check_bijector(layer, x, z=_randn(24, dim, seed=seed + 9))
        eye = torch.eye(dim, dtype=torch.float64)
        L = torch.tril(layer.L.detach(), diagonal=-1) + eye
        s = layer.sign_s * layer.log_s.detach().exp()
        U = torch.triu(layer.U.detach(), diagonal=1) + torch.diag(s)
        expected = layer.P @ L @ U
        check_close(
            layer.weight(),
            expected,
            what=f"weight() (D = {dim}; W = P L U, L unit lower, U upper with diagonal s)",
        )
        _, log_det = layer.forward(x)
        check_close(
            log_det,
            torch.full((24,), layer.log_s.detach().sum().item(), dtype=torch.float64),
            what="forward log_det (Σ log|s_i| for every sample)",
        )


# ----------------------------------------------------------------------------- 03


def check_planar(planar: Callable[..., nn.Module]) -> None:
    """``Planar(dim, seed=)`` with generic parameters: every bijector check, far points too."""
    for dim, seed in ((2, 0), (5, 1), (5, 2)):
        layer = perturb_parameters(planar(dim, seed=seed), seed=seed + 3, scale=0.5)
        x = 2 * _randn(32, dim, seed=seed + 4)
        check_bijector(layer, x, z=4 * _randn(32, dim, seed=seed + 5))


def check_planar_adversarial(planar: Callable[..., nn.Module]) -> None:
    """Short ``w`` and ``wᵀu ≪ -1``: ``wᵀû > -1`` must hold and ``forward`` stay invertible.

    Invertibility is checked on ``forward`` alone (the inverse is graded elsewhere): along ``w``
    the map acts on ``α = wᵀx`` as ``α + (wᵀû) tanh(α + b)``, which must increase strictly, and
    the log-det must be finite, also at ``α = -b`` where ``tanh'`` is largest.
    """
    for dim, norm, w_dot_u in ((2, 0.3, -4.0), (4, 0.6, -9.0)):
        layer = planar(dim, seed=0).double()
        direction = _randn(dim, seed=dim)
        direction = direction / direction.norm()
        with torch.no_grad():
            layer.w.copy_(norm * direction)
            layer.u.copy_(w_dot_u / norm * direction + 0.1 * _randn(dim, seed=dim + 1))
            layer.u.sub_((layer.w.dot(layer.u) - w_dot_u) * layer.w / layer.w.dot(layer.w))
            layer.b.fill_(0.2)
            constraint = float(layer.w.dot(layer.u_hat()))
        setting = f"with ‖w‖ = {norm} and wᵀu = {w_dot_u}"
        if not constraint > -1:
            raise GradingCheckError(
                f"{setting}: wᵀû = {constraint:.6g}, but the map is invertible only if "
                "wᵀû > -1 (check the projection coefficient in û)"
            )
        alpha = torch.cat(
            [torch.linspace(-6.0, 6.0, 239, dtype=torch.float64), -layer.b.detach().reshape(1)]
        )
        alpha = torch.unique(alpha)  # sorted, without the duplicate when -b is on the grid
        offset = _randn(1, dim, seed=dim + 2)
        offset = offset - (offset @ layer.w.detach()).unsqueeze(1) * layer.w.detach() / norm**2
        x = offset + alpha.unsqueeze(1) * layer.w.detach() / norm**2
        with torch.no_grad():
            z, log_det = layer.forward(x)
        if not bool(torch.isfinite(log_det).all()):
            worst = int((~torch.isfinite(log_det)).nonzero()[0])
            raise GradingCheckError(
                f"{setting}: forward log_det is {log_det[worst].item()} at wᵀx = "
                f"{alpha[worst].item():.3g}; it must be finite for an invertible map"
            )
        along_w = z @ layer.w.detach()
        steps = along_w[1:] - along_w[:-1]
        if not bool((steps > 0).all()):
            worst = int(steps.argmin())
            raise GradingCheckError(
                f"{setting}: wᵀf(x) decreases between wᵀx = {alpha[worst].item():.3g} and "
                f"{alpha[worst + 1].item():.3g}, so two points map to the same z"
            )
