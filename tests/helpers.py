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
