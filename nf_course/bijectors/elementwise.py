r"""Elementwise bijectors: maps that act on each coordinate separately.

Mathematics (Isachenko's 2022 lecture 5, "Jacobian structure"). A map :math:`z_i = h_i(x_i)` has a
diagonal Jacobian, so :math:`\log|\det \partial f/\partial x| = \sum_i \log|h_i'(x_i)|`: O(D) per
sample in both directions. Alone such a map cannot correlate coordinates; it rescales and shifts
them, and it pre-processes data (the logit transform of RealNVP, Dinh et al. 2017).

**Logit pre-processing** (:class:`Logit`). Dequantized images live in the bounded box
:math:`(0, K)^D`, while a flow with a Gaussian base maps onto all of :math:`\mathbb R^D`.
RealNVP (Dinh, Sohl-Dickstein and Bengio, *Density estimation using Real NVP*, ICLR 2017,
section 4.1) therefore models the density of the logits of the pixels, kept away from the
ends of :math:`(0, 1)` by :math:`\alpha` so that no value lands at :math:`\pm\infty`:

.. math::

    p = \alpha + (1 - 2\alpha)\, \frac{y}{K}, \qquad z = \operatorname{logit}(p) = \log p -
    \log(1 - p), \qquad \log \left|\frac{dz}{dy}\right| = \log \frac{1 - 2\alpha}{K} - \log p -
    \log(1 - p).

The inverse is :math:`y = K\,(\sigma(z) - \alpha) / (1 - 2\alpha)` with
:math:`\log |dy/dz| = \log \frac{K}{1 - 2\alpha} + \log \sigma(z) + \log \sigma(-z)`.
This symmetric form, which keeps ``y = K/2`` at ``z = 0``, is the one of FFJORD's
``LogitTransform``; RealNVP uses :math:`\alpha = 0.05`. The log-determinant enters the
log-likelihood, so bits/dim measured through :class:`Logit` are still those of the data in
unit-bin space.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nf_course.common import in_interval, positive_float, positive_int, validate_batch
from nf_course.core import Bijector

__all__ = ["ElementwiseAffine", "Logit"]


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
        self.dim = positive_int(dim, "dim", "ElementwiseAffine")
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


def _sum_per_sample(values: Tensor) -> Tensor:
    """``(B, …) -> (B,)``: the sum over all but the batch dimension."""
    return values.reshape(values.shape[0], -1).sum(dim=1)


class Logit(Bijector):
    """The RealNVP pre-processing ``z = logit(α + (1 - 2α) y / K)``, elementwise.

    ``forward`` maps data ``y ∈ [0, K]`` (dequantized pixel levels) to ``z ∈ ℝ``; ``inverse``
    maps back. Works on batches ``(B, D)`` and ``(B, C, H, W)``; ``log_det`` is ``(B,)``.
    It has no parameters and computes in the dtype of its input. The domain is not checked
    (that would need a data-dependent branch, which ``torch.func`` transforms reject): values
    outside ``[0, K]`` may give ``nan``.

    Args:
        bins: ``K``, the upper end of the data range (17 for the 8x8 digits, 256 for 8-bit
            images).
        alpha: ``α ∈ [0, 1/2)``, how far the data are kept from the ends of ``(0, 1)``
            (RealNVP's 0.05); with ``α = 0`` the ends ``y = 0`` and ``y = K`` map to ``±∞``.
    """

    def __init__(self, *, bins: float = 17, alpha: float = 0.05) -> None:
        super().__init__()
        self.bins = positive_float(bins, "bins", "Logit")
        self.alpha = in_interval(alpha, "alpha", "Logit", 0, 0.5, closed_low=True)

    def _log_scale(self) -> float:
        """``log((1 - 2α)/K)``, the log-slope of the affine part ``y ↦ p``."""
        return math.log1p(-2 * self.alpha) - math.log(self.bins)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``y (B, …) -> (z, log|det ∂z/∂y|)`` with ``z`` of the same shape, ``log_det (B,)``."""
        validate_batch(x, None, where="Logit.forward")
        p = self.alpha + (1 - 2 * self.alpha) / self.bins * x
        log_p, log_q = torch.log(p), torch.log1p(-p)
        return log_p - log_q, _sum_per_sample(self._log_scale() - log_p - log_q)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (B, …) -> (y, log|det ∂y/∂z|)`` with ``y`` of the same shape, ``log_det (B,)``."""
        validate_batch(z, None, where="Logit.inverse", name="z")
        y = (torch.sigmoid(z) - self.alpha) * (self.bins / (1 - 2 * self.alpha))
        # log σ(z) + log σ(-z) = -softplus(-z) - softplus(z)
        log_slope = -F.softplus(-z) - F.softplus(z)
        return y, _sum_per_sample(log_slope - self._log_scale())

    def extra_repr(self) -> str:
        return f"bins={self.bins:g}, alpha={self.alpha:g}"
