"""nf_course: the reference package of the normalizing-flows course.

Convention (one for the whole course): ``forward(x) -> (z, log_det)`` is the normalizing
direction, data to noise; ``inverse(z) -> (x, log_det)`` the generative one. See ``core``.
"""

from nf_course.core import Bijector, Compose, Flow, Inverse, StandardNormal

__all__ = ["Bijector", "Compose", "Flow", "Inverse", "StandardNormal"]
__version__ = "0.1.0"
