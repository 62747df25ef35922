"""Helpers shared by the bijector tests."""

from __future__ import annotations

import torch
from torch import nn


def perturbed(module: nn.Module, *, seed: int = 0, scale: float = 0.3) -> nn.Module:
    """``module`` in float64 with seeded Gaussian noise of std ``scale`` added to every parameter.

    A freshly initialized flow is often the identity (zero-initialized conditioners) or
    orthogonal, which hides bugs such as a flipped log-det sign, a transposed matrix or a missing
    term; the noise makes every parameter generic before a layer is checked.
    """
    module = module.double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(scale * noise)
    return module


def banana(n: int, seed: int) -> torch.Tensor:
    """``(n, 2)`` samples of x1 ~ N(0, 1), x2 = x1²/2 - 1/2 + 0.3·ε: curved, not Gaussian.

    Its entropy is ≈ 1.63 nats; the identity flow's NLL on it is ≈ 2.70 nats.
    """
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, generator=generator)
    x2 = x1.square() / 2 - 0.5 + 0.3 * torch.randn(n, generator=generator)
    return torch.stack([x1, x2], dim=1)


def held_out_nll_before_and_after(
    flow: nn.Module, train: torch.Tensor, test: torch.Tensor, *, steps: int, lr: float
) -> tuple[float, float]:
    """Fit ``flow`` by full-batch Adam on ``train``; its NLL on ``test`` before and after."""
    with torch.no_grad():
        before = flow.forward_kl(test).item()
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        flow.forward_kl(train).backward()
        optimizer.step()
    with torch.no_grad():
        after = flow.forward_kl(test).item()
    return before, after
