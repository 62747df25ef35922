"""Assignment 02, linear flows (``solutions/02_linear_flows``; book chapter 4): a permutation and
the LU-parametrized matrix ``W = PLU`` with its ``O(D)`` log-determinant.

The inputs are chosen so that no wrong formula is right by accident: permutations that are not
their own inverse and whose reversal is not their inverse, lists that fool the usual shortcuts for
"is a permutation" (a sum, a maximum, distinct entries), LU layers whose ``P`` is neither the
identity nor symmetric and whose ``s`` has both signs, every parameter perturbed (the masked-out
triangles included), and batch sizes other than the dimension."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, check_close, randn

# Valid permutations: two made of 3-cycles, an involution, the identity and a 3-cycle given as
# a tensor; only the involution and the identity are their own inverse, and no other one has
# its reversal as its inverse (as the visible test's [2, 0, 3, 1] has).
_PERMUTATIONS = (
    [1, 2, 0, 5, 3, 4],
    [5, 4, 3, 2, 1, 0],
    [0, 1, 2, 3, 4, 5],
    [3, 0, 4, 1, 5, 2],
    torch.tensor([2, 0, 1]),
)

# Lists that are not permutations, each missed by a common shortcut: distinct entries only
# ([1, 2, 3], [0, 2]), the right sum ([1, 1, 1], [-1, 1, 3]), the right minimum and maximum
# ([3, 0, 0, 1]), entries below D only ([-1, 0, 1]).
_NOT_PERMUTATIONS = (
    [0, 0, 1],
    [1, 2, 3],
    [0, 2],
    [-1, 0, 1],
    [1, 1, 1],
    [-1, 1, 3],
    [3, 0, 0, 1],
)


def check_permutation(permutation: Callable[[object], nn.Module]) -> None:
    """``Permutation(perm)``: ``forward`` is ``x[:, perm]``, ``inverse`` undoes it, every
    bijector check passes."""
    for perm in _PERMUTATIONS:
        dim = len(perm)
        x = randn(16, dim, seed=dim)
        shown = perm.tolist() if isinstance(perm, Tensor) else perm
        layer = permutation(perm)
        check_bijector(layer, x)
        z, _ = layer.forward(x)
        check_close(z, x[:, shown], what=f"forward(x) for perm = {shown} (z[:, i] = x[:, perm[i]])")
        x_back, _ = layer.inverse(x)
        inverse = torch.argsort(torch.as_tensor(shown))
        check_close(
            x_back,
            x[:, inverse],
            what=f"inverse(z) for perm = {shown} (the inverse permutation {inverse.tolist()})",
        )


def _why_not(bad: list[int]) -> str:
    """What makes ``bad`` fail to be a permutation of ``0, …, len(bad) - 1``."""
    reasons = []
    repeated = sorted({i for i in bad if bad.count(i) > 1})
    outside = sorted({i for i in bad if not 0 <= i < len(bad)})
    missing = sorted(set(range(len(bad))) - set(bad))
    if repeated:
        reasons.append(f"{repeated} repeated")
    if outside:
        reasons.append(f"{outside} out of range")
    if missing:
        reasons.append(f"{missing} missing")
    return ", ".join(reasons)


def check_permutation_rejects_bad_input(permutation: Callable[[object], nn.Module]) -> None:
    """A list that is not a permutation of ``0, …, D-1`` raises ``ValueError``."""
    for bad in _NOT_PERMUTATIONS:
        try:
            permutation(bad)
        except ValueError:
            continue
        except Exception as exc:
            raise GradingCheckError(
                f"Permutation({bad}) raised {type(exc).__name__}; expected a ValueError with a "
                "message"
            ) from exc
        raise GradingCheckError(
            f"Permutation({bad}) was accepted, but {bad} is not a permutation of "
            f"0, …, {len(bad) - 1} ({_why_not(bad)}): raise a ValueError"
        )


def _factors(
    layer: nn.Module, *, l_mask: int | None = -1, u_mask: int | None = 1, signs: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """``(P, L, U)`` from the layer's parameters, detached, in float64: ``L`` is
    ``tril(layer.L, l_mask) + I`` and ``U`` is ``triu(layer.U, u_mask) + diag(s)``. Other masks
    (``None``: none) and ``signs=False`` (``s`` without ``sign_s``) give the usual mistakes, for
    the diagnosis of a wrong ``weight()``."""
    eye = torch.eye(layer.L.shape[0], dtype=torch.float64)
    L, U = layer.L.detach().double(), layer.U.detach().double()
    s = layer.log_s.detach().double().exp() * (layer.sign_s.double() if signs else 1.0)
    L = L if l_mask is None else torch.tril(L, diagonal=l_mask)
    U = U if u_mask is None else torch.triu(U, diagonal=u_mask)
    return layer.P.double(), L + eye, U + torch.diag(s)


def _weight(layer: nn.Module, **mistakes: int | bool | None) -> Tensor:
    P, L, U = _factors(layer, **mistakes)
    return P @ L @ U


def _weight_cause(got: Tensor, layer: nn.Module, fresh: nn.Module) -> str:
    """A likely cause when ``got`` is one of the usual wrong matrices, else ``""``."""
    P, L, U = _factors(layer)
    lower = "L is torch.tril(self.L, diagonal=-1) plus the identity"
    upper = "U is torch.triu(self.U, diagonal=1) plus diag(s)"
    candidates = {
        "P is missing (W = L U)": L @ U,
        "Pᵀ is used in place of P": P.T @ L @ U,
        f"self.L is used without its mask: {lower}": _weight(layer, l_mask=None),
        f"the diagonal of self.L is kept: {lower}": _weight(layer, l_mask=0),
        f"self.U is used without its mask: {upper}": _weight(layer, u_mask=None),
        f"the diagonal of self.U is kept: {upper}": _weight(layer, u_mask=0),
        "the diagonal of U lacks the signs: s = sign_s · exp(log_s)": _weight(layer, signs=False),
        "W is computed once, at construction: weight() must rebuild it from the parameters at "
        "every call": _weight(fresh),
    }
    for cause, wrong in candidates.items():
        if torch.allclose(got.detach().double(), wrong, atol=1e-8, rtol=1e-6):
            return f"\n  likely cause: {cause}"
    return ""


# (dim, seed): P is neither the identity nor symmetric for these seeds, s has both signs.
_LU_CASES = ((3, 2), (6, 1))


def check_lu_linear(linear_lu: Callable[..., nn.Module]) -> None:
    """``LinearLU(dim, seed=)`` after a perturbation of every parameter: ``weight()`` is
    ``P L U`` from the masked factors, ``forward`` is ``x Wᵀ`` with log-det ``Σ log|s|``,
    every bijector check passes, the inverse's derivatives included."""
    for dim, seed in _LU_CASES:
        fresh = linear_lu(dim, seed=seed).double()
        layer = perturb_parameters(linear_lu(dim, seed=seed), seed=seed + 7, scale=0.3)
        expected = _weight(layer)
        try:
            got = layer.weight()
        except Exception as exc:
            raise GradingCheckError(f"weight() raised {type(exc).__name__}: {exc}") from exc
        try:
            check_close(
                got,
                expected,
                what=f"weight() (D = {dim}; W = P L U, L unit lower, U upper with diagonal s)",
            )
        except GradingCheckError as error:
            comparable = isinstance(got, Tensor) and got.shape == expected.shape
            cause = _weight_cause(got, layer, fresh) if comparable else ""
            raise GradingCheckError(f"{error}{cause}") from None
        x = randn(24, dim, seed=seed + 8)
        check_bijector(layer, x, z=randn(24, dim, seed=seed + 9), differentiable_inverse=True)
        z, log_det = layer.forward(x)
        check_close(z, x @ expected.T, what=f"forward(x) (D = {dim}; z = W x, i.e. x @ W.T)")
        check_close(
            log_det,
            torch.full((24,), layer.log_s.detach().sum().item(), dtype=torch.float64),
            what="forward log_det (Σ log|s_i| for every sample)",
        )
