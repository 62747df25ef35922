"""Assignment 03, the planar flow (``solutions/03_planar``; book chapter 5): the constrained
``û`` and the root-finding inverse."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, randn


def check_planar(planar: Callable[..., nn.Module]) -> None:
    """``Planar(dim, seed=)`` with generic parameters: every bijector check, far points too, and
    the inverse's derivatives (the assignment asks for a final Newton step with gradients)."""
    for dim, seed in ((2, 0), (5, 1), (5, 2)):
        layer = perturb_parameters(planar(dim, seed=seed), seed=seed + 3, scale=0.5)
        x = 2 * randn(32, dim, seed=seed + 4)
        check_bijector(layer, x, z=4 * randn(32, dim, seed=seed + 5), differentiable_inverse=True)


def check_planar_adversarial(planar: Callable[..., nn.Module]) -> None:
    """Short ``w`` and ``wᵀu ≪ -1``: ``wᵀû > -1`` must hold and ``forward`` stay invertible.

    Invertibility is checked on ``forward`` alone (the inverse is graded elsewhere): along ``w``
    the map acts on ``α = wᵀx`` as ``α + (wᵀû) tanh(α + b)``, which must increase strictly, and
    the log-det must be finite, also at ``α = -b`` where ``tanh'`` is largest.
    """
    for dim, norm, w_dot_u in ((2, 0.3, -4.0), (4, 0.6, -9.0)):
        layer = planar(dim, seed=0).double()
        direction = randn(dim, seed=dim)
        direction = direction / direction.norm()
        with torch.no_grad():
            layer.w.copy_(norm * direction)
            layer.u.copy_(w_dot_u / norm * direction + 0.1 * randn(dim, seed=dim + 1))
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
        offset = randn(1, dim, seed=dim + 2)
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
