"""Reference flows fitted to a 2D target with a known density: KL to the truth, normalization.

KL(π ‖ p_θ) is estimated on held-out samples of π as the mean of log π − log p_θ (the true
density comes from ``nf_course.datasets``). Speed is the benchmarks' business; here the number
of steps is fixed and only the quality is asserted.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module", params=list(FLOWS))
def fitted(request) -> nf.Flow:
    torch.manual_seed(0)
    flow = nf.Flow(FLOWS[request.param](), nf.StandardNormal(2))
    fit(flow, data=TARGET.sample, steps=1500, batch_size=256, lr=1e-2, clip_grad_norm=5.0, seed=0)
    return flow.eval()


def test_forward_kl_fit_of_8_gaussians_gets_within_0_3_nats_of_the_truth(fitted: nf.Flow):
    test = TARGET.sample(4000, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        kl = (TARGET.log_prob(test) - fitted.log_prob(test)).mean().item()
    assert 0 < kl < 0.3, f"KL(π ‖ p_θ) = {kl:.3f} nats"


def test_fitted_density_integrates_to_one(fitted: nf.Flow):
    grid = torch.linspace(-8, 8, 641)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = fitted.log_prob(points).exp().reshape(641, 641)
    mass = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid).item()
    assert abs(mass - 1) < 5e-3, f"∫ p_θ = {mass:.5f}"
