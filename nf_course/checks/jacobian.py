"""Brute-force Jacobians and log-determinants by reverse-mode autograd: the reference values
every log-det check compares with (meant for checking, not for training)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def brute_force_jacobian(fn: Callable[[Tensor], object], x: Tensor) -> Tensor:
    """Per-sample Jacobians of ``fn`` by reverse-mode autograd: ``(B, …) -> (B, n_out, n_in)``.

    ``fn`` maps a batch to ``out`` or to a tuple ``(out, …)``. One backward pass per output
    coordinate ``j`` differentiates ``Σ_b out[b, j]``; for a map that treats samples
    independently its gradient at ``x[b]`` is row ``j`` of sample ``b``'s Jacobian.

    Raises:
        ValueError: the output is not differentiable with respect to ``x``.
    """
    batch = x.shape[0]
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(x)
        out = out[0] if isinstance(out, tuple | list) else out
        flat = out.reshape(batch, -1)
        if not flat.requires_grad:
            raise ValueError(
                "the output does not depend differentiably on the input (computed under "
                "torch.no_grad, with .detach(), .item() or NumPy?)"
            )
        rows = []
        for j in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(x) if grad is None else grad)
    return torch.stack([row.reshape(batch, -1) for row in rows], dim=1)


def brute_force_log_det(fn: Callable[[Tensor], object], x: Tensor) -> Tensor:
    """``log|det J|`` per sample from the full autograd Jacobian of ``fn``: ``(B, …) -> (B,)``.

    ``fn`` returns ``out`` or ``(out, …)`` with as many elements per sample as ``x``. The
    determinant is taken in float64; a singular Jacobian gives ``-inf``. Costs one backward
    pass per dimension and ``O(D³)`` per sample.
    """
    jacobian = brute_force_jacobian(fn, x)
    if jacobian.shape[1] != jacobian.shape[2]:
        raise ValueError(
            f"the map changes the number of elements per sample ({jacobian.shape[2]} -> "
            f"{jacobian.shape[1]}): its Jacobian is not square and has no determinant"
        )
    return torch.linalg.slogdet(jacobian.double()).logabsdet.to(x.dtype)
