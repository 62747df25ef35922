"""Assignment 02, linear flows (``solutions/02_linear_flows``; book chapter 4): a permutation and
the LU-parametrized matrix ``W = PLU`` with its ``O(D)`` log-determinant."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, check_close, randn


def check_permutation(permutation: Callable[[object], nn.Module]) -> None:
    """``Permutation(perm)``: ``forward`` is ``x[:, perm]``, every bijector check passes."""
    x = randn(16, 6, seed=5)
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
        x = randn(24, dim, seed=seed + 8)
        check_bijector(layer, x, z=randn(24, dim, seed=seed + 9))
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
