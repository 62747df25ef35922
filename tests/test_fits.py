"""Reference flows fitted to a 2D target with a known density: KL to the truth, normalization.

KL(π ‖ p_θ) is estimated on held-out samples of π as the mean of log π − log p_θ (the true
density comes from ``nf_course.datasets``). Speed is the benchmarks' business; here the number
of steps is fixed and only the quality is asserted. ``benchmarks/short_fits.py`` runs the same
fits over other seeds: how far below the bound they end, i.e. how much a change of rounding
or of seed can move them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch

import nf_course as nf
from nf_course.bijectors import MAF, AffineCoupling, ElementwiseAffine
from nf_course.datasets import toy
from nf_course.training import fit

TARGET = toy("8gaussians")
FLOWS = {
    "RealNVP": lambda: nf.Compose(
        ElementwiseAffine(2), *[AffineCoupling(2, hidden=64, parity=k % 2) for k in range(8)]
    ),
    "MAF": lambda: nf.Compose(
        ElementwiseAffine(2),
        *[MAF(2, hidden=(64, 64), order=("natural", "reversed")[k % 2]) for k in range(5)],
    ),
}


#: How each flow is fitted; ``benchmarks/short_fits.py`` runs the same fit over other seeds.
FIT = {"steps": 3000, "batch_size": 256, "lr": 1e-2, "clip_grad_norm": 5.0}
#: The bound on KL(π ‖ p_θ), in nats.
BOUND = 0.3


def fitted_flow(
    build: Callable[[], nf.Bijector], seed: int = 0, settings: Mapping[str, Any] = FIT
) -> nf.Flow:
    """The flow of ``build`` (one of :data:`FLOWS`), initialized from ``seed`` and fitted to the
    target with ``settings`` (keyword arguments of :func:`~nf_course.training.fit`)."""
    torch.manual_seed(seed)
    flow = nf.Flow(build(), nf.StandardNormal(2))
    fit(flow, data=TARGET.sample, seed=seed, **settings)
    return flow.eval()


def kl_to_truth(flow: nf.Flow) -> float:
    """KL(π ‖ p_θ) on 4000 held-out samples of the target, in nats."""
    test = TARGET.sample(4000, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return (TARGET.log_prob(test) - flow.log_prob(test)).mean().item()


@pytest.fixture(scope="module", params=list(FLOWS))
def fitted(request) -> nf.Flow:
    return fitted_flow(FLOWS[request.param])


def test_forward_kl_fit_of_8_gaussians_gets_within_0_3_nats_of_the_truth(fitted: nf.Flow):
    kl = kl_to_truth(fitted)
    assert 0 < kl < BOUND, f"KL(π ‖ p_θ) = {kl:.3f} nats"


def test_fitted_density_integrates_to_one(fitted: nf.Flow):
    grid = torch.linspace(-8, 8, 641)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = fitted.log_prob(points).exp().reshape(641, 641)
    mass = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid).item()
    assert abs(mass - 1) < 5e-3, f"∫ p_θ = {mass:.5f}"
