r"""Elementwise bijectors: maps that act on each coordinate separately.

Mathematics (lecture 000, "Jacobian structure"). A map :math:`z_i = h_i(x_i)` has a diagonal
Jacobian, so :math:`\log|\det \partial f/\partial x| = \sum_i \log|h_i'(x_i)|`: O(D) per sample
in both directions. Alone such a map cannot correlate coordinates; it rescales and shifts
them, and it pre-processes data (the logit transform of RealNVP, Dinh et al. 2017).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nf_course.core import Bijector, validate_batch

__all__ = ["ElementwiseAffine"]


class ElementwiseAffine(Bijector):
    r"""Diagonal affine map :math:`z = (x - \mu) / \sigma`, i.e. :math:`x = \mu + \sigma \odot z`.

    The Jacobian is diagonal, :math:`\log|\det \partial f/\partial x| = -\sum_i \log\sigma_i`,
    the same for every sample: O(D) in both directions. Fresh, it is the identity
    (:math:`\mu = 0`, :math:`\log\sigma = 0`). A flow made of this layer alone is the Gaussian
    :math:`\mathcal N(\mu, \operatorname{diag}\sigma^2)`.

    Args:
        dim: number of features D; inputs are ``(B, D)``.

    Attributes:
        loc: :math:`\mu`, shape ``(D,)``.
        log_scale: :math:`\log\sigma`, shape ``(D,)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, D) -> (z (B, D), log_det (B,))``."""
        validate_batch(x, (self.dim,), where="ElementwiseAffine.forward")
        z = (x - self.loc) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, D) -> (x (B, D), log_det (B,))``."""
        validate_batch(z, (self.dim,), where="ElementwiseAffine.inverse", name="z")
        x = self.loc + z * torch.exp(self.log_scale)
        return x, self.log_scale.sum().expand(z.shape[0])

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
