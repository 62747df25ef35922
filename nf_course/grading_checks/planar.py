"""Assignment 03, the planar flow (``solutions/03_planar``; book chapter 5): the constrained
``û`` and the root-finding inverse.

Layers are set up with ``wᵀû`` from just above -1 to 11 (trained layers reach about 11, where a
bracket of half-width 1 or a fixed one, or Newton's method without a bracket, fails), with
``b ≠ 0`` and base points far along ``w``; ``û`` is compared with its formula, also where
``wᵀu ≫ 0`` (a missing ``-1`` in ``m`` keeps the layer invertible, with another ``û``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from nf_course.checks import check_bijector, perturb_parameters
from nf_course.grading_checks.common import GradingCheckError, check_close, randn

# (dim, ‖w‖, wᵀu, b, std of the base points z): wᵀû = m(wᵀu) is about 11, 3 and -0.9975
TRAINED = ((2, 1.5, 12.0, 0.7, 6.0), (3, 3.0, 4.0, -1.2, 8.0), (4, 0.8, -6.0, 0.4, 4.0))


def _layer(
    planar: Callable[..., nn.Module], dim: int, norm: float, w_dot_u: float, b: float
) -> nn.Module:
    """``planar(dim, seed=0)`` in float64 with ``‖w‖ = norm``, ``wᵀu = w_dot_u`` (``u`` has a
    component orthogonal to ``w`` too) and the bias ``b``."""
    layer = planar(dim, seed=0).double()
    direction = randn(dim, seed=dim)
    direction = direction / direction.norm()
    with torch.no_grad():
        layer.w.copy_(norm * direction)
        layer.u.copy_(w_dot_u / norm * direction + 0.1 * randn(dim, seed=dim + 1))
        layer.u.sub_((layer.w.dot(layer.u) - w_dot_u) * layer.w / layer.w.dot(layer.w))
        layer.b.fill_(b)
    return layer


def check_planar(planar: Callable[..., nn.Module]) -> None:
    """``Planar(dim, seed=)`` with generic and with trained-looking parameters (``wᵀû`` up to
    11, base points far along ``w``): every bijector check, the inverse's derivatives included
    (the assignment asks for a final Newton step with gradients)."""
    for dim, seed in ((2, 0), (5, 1), (5, 2)):
        layer = perturb_parameters(planar(dim, seed=seed), seed=seed + 3, scale=0.5)
        x = 2 * randn(32, dim, seed=seed + 4)
        check_bijector(layer, x, z=4 * randn(32, dim, seed=seed + 5), differentiable_inverse=True)
    for dim, norm, w_dot_u, b, spread in TRAINED:
        layer = _layer(planar, dim, norm, w_dot_u, b)
        x = 2 * randn(24, dim, seed=10 + dim)
        z = spread * randn(24, dim, seed=20 + dim)
        check_bijector(layer, x, z=z, differentiable_inverse=True)


def _check_u_hat_formula(layer: nn.Module, setting: str) -> None:
    """``û = u + (m(wᵀu) - wᵀu) w / ‖w‖²`` with ``m(a) = softplus(a) - 1``."""
    w, u = layer.w.detach(), layer.u.detach()
    w_dot_u = w.dot(u)
    expected = u + (F.softplus(w_dot_u) - 1 - w_dot_u) * w / w.dot(w)
    with torch.no_grad():
        got = layer.u_hat()
    check_close(
        got, expected, what=f"û {setting} (u + (m(wᵀu) - wᵀu) w / ‖w‖², m(a) = -1 + log(1 + eᵃ))"
    )


def check_planar_adversarial(planar: Callable[..., nn.Module]) -> None:
    """``û`` against its formula for ``wᵀu`` from -9 to 12; then short ``w`` and ``wᵀu ≪ -1``:
    ``wᵀû > -1`` must hold and ``forward`` stay invertible.

    Invertibility is checked on ``forward`` alone (the inverse is graded elsewhere): along ``w``
    the map acts on ``α = wᵀx`` as ``α + (wᵀû) tanh(α + b)``, which must increase strictly, and
    the log-det must be finite, also at ``α = -b`` where ``tanh'`` is largest.
    """
    for dim, norm, w_dot_u in ((2, 0.3, -4.0), (4, 0.6, -9.0)):
        layer = _layer(planar, dim, norm, w_dot_u, 0.2)
        setting = f"with ‖w‖ = {norm} and wᵀu = {w_dot_u}"
        with torch.no_grad():
            constraint = float(layer.w.dot(layer.u_hat()))
        if not constraint > -1:
            raise GradingCheckError(
                f"{setting}: wᵀû = {constraint:.6g}, but the map is invertible only if "
                "wᵀû > -1 (check the projection coefficient in û)"
            )
        _check_u_hat_formula(layer, setting)
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
    for dim, norm, w_dot_u, b, _ in TRAINED:
        layer = _layer(planar, dim, norm, w_dot_u, b)
        _check_u_hat_formula(layer, f"with ‖w‖ = {norm} and wᵀu = {w_dot_u}")
