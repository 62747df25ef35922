"""Elementwise bijectors: the diagonal affine map :class:`ElementwiseAffine` and RealNVP's logit
pre-processing of images, :class:`Logit` (Dinh et al. 2017).

Chapters: ``book/04_linear_flows.md`` (diagonal Jacobians) and ``book/09_glow.md`` (the logit
before the digits flows); tests: ``tests/test_elementwise.py``; no assignment; benchmarks:
``benchmarks/digits_baselines.py`` and, through :func:`nf_course.pretrained.digits_flow`,
``benchmarks/digits_bpd.py``.
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

    With ``p = α + (1 - 2α) y / K``: ``z = log p - log(1 - p)`` and
    ``log|dz/dy| = log((1 - 2α)/K) - log p - log(1 - p)``; the inverse is
    ``y = K (σ(z) - α) / (1 - 2α)`` with ``log|dy/dz| = log(K/(1 - 2α)) + log σ(z) + log σ(-z)``.
    This symmetric form, which keeps ``y = K/2`` at ``z = 0``, is that of FFJORD's
    ``LogitTransform``. The log-det enters the log-likelihood, so bits/dim measured through
    ``Logit`` are still those of the data in unit-bin space.

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
