"""Elementwise bijectors."""

from __future__ import annotations

import pytest
import torch
from helpers import perturbed

from nf_course import Flow, StandardNormal
from nf_course.bijectors import ElementwiseAffine
from nf_course.checks import check_bijector


@pytest.mark.parametrize("batch", [2, 17])
def test_elementwise_affine_passes_the_checker_with_perturbed_parameters(batch: int):
    x = torch.randn(batch, 4, generator=torch.Generator().manual_seed(0))
    check_bijector(perturbed(ElementwiseAffine(4)), x)


def test_elementwise_affine_is_the_identity_when_fresh():
    x = torch.randn(5, 3)
    z, log_det = ElementwiseAffine(3)(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(5))


def test_elementwise_affine_flow_is_the_gaussian_with_its_loc_and_scale():
    layer = perturbed(ElementwiseAffine(3), scale=0.7)
    x = torch.randn(50, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(layer.loc, layer.log_scale.exp()).log_prob(x).sum(1)
    flow = Flow(layer, StandardNormal(3)).double()
    torch.testing.assert_close(flow.log_prob(x), expected)


@pytest.mark.parametrize("shape", [(4, 3), (4, 2, 2), (3,)])
def test_elementwise_affine_refuses_wrong_shapes(shape):
    with pytest.raises(ValueError, match=r"ElementwiseAffine.forward: x must have shape \(B, 2\)"):
        ElementwiseAffine(2)(torch.zeros(shape))
