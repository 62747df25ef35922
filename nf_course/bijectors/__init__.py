"""Bijectors of the course, one module per family of flows.

Every vector bijector is built as ``Cls(dim)`` and every image bijector as ``Cls(channels)``;
other options are keyword-only. ``forward`` is the normalizing direction (data to noise).
"""

from nf_course.bijectors.autoregressive import IAF, MADE, MAF
from nf_course.bijectors.continuous import CNF, FFJORD
from nf_course.bijectors.coupling import AdditiveCoupling, AffineCoupling, AffineCoupling2d
from nf_course.bijectors.elementwise import ElementwiseAffine, Logit
from nf_course.bijectors.glow import ActNorm, Glow, GlowStep, Squeeze
from nf_course.bijectors.linear import (
    InvConv1x1,
    Linear,
    LinearLU,
    LinearQR,
    Permutation,
    Reverse,
)
from nf_course.bijectors.planar import Planar, Radial, Sylvester
from nf_course.bijectors.residual import (
    FixedPointConvergenceError,
    InvertibleResidual,
    LipschitzMLP,
    SpectralNormLinear,
)
from nf_course.bijectors.spline import SplineCoupling

__all__ = [
    "CNF",
    "FFJORD",
    "IAF",
    "MADE",
    "MAF",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "AffineCoupling2d",
    "ElementwiseAffine",
    "FixedPointConvergenceError",
    "Glow",
    "GlowStep",
    "InvConv1x1",
    "InvertibleResidual",
    "Linear",
    "LinearLU",
    "LinearQR",
    "LipschitzMLP",
    "Logit",
    "Permutation",
    "Planar",
    "Radial",
    "Reverse",
    "SpectralNormLinear",
    "SplineCoupling",
    "Squeeze",
    "Sylvester",
]
