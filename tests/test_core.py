"""Core: composition, inversion, the base distribution and the flow's densities."""

from __future__ import annotations

import math

import pytest
import torch
from checker_catalogue import Coupling, ExpAffine, FixedPermutation, vectors
from torch import nn

from nf_course import Bijector, Compose, Flow, Inverse, StandardNormal
from nf_course.checks import check_bijector


class ForwardForbidden(ExpAffine):
    def forward(self, x):
        raise AssertionError("sample_and_log_prob must not call forward")


def stack(dim: int = 4) -> Compose:
    return Compose(ExpAffine(dim), Coupling(dim), FixedPermutation(dim), Coupling(dim, "tanh"))


def test_compose_and_inverse_are_bijectors_that_pass_the_checker():
    check_bijector(stack(), vectors())
    check_bijector(Inverse(stack()), vectors())


def test_compose_sums_log_dets_and_inverts_in_reverse_order():
    x = vectors().double()
    layers = stack().double()
    z, log_det = layers(x)
    expected_z, expected_log_det = x, torch.zeros(x.shape[0], dtype=x.dtype)
    for layer in layers.bijectors:
        expected_z, step = layer(expected_z)
        expected_log_det = expected_log_det + step
    torch.testing.assert_close(z, expected_z)
    torch.testing.assert_close(log_det, expected_log_det)
    x_back, inverse_log_det = layers.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_log_det, -log_det)
    assert len(layers) == 4 and isinstance(layers[1], Coupling)


def test_compose_accepts_a_list_and_refuses_non_bijectors():
    assert len(Compose([ExpAffine(2), ExpAffine(2)])) == 2
    with pytest.raises(TypeError, match=r"argument 1 .*Linear.* is not a bijector"):
        Compose(ExpAffine(2), nn.Linear(2, 2))


def test_inverse_swaps_directions():
    layer = ExpAffine(3).double()
    x = vectors(dim=3).double()
    torch.testing.assert_close(Inverse(layer)(x)[0], layer.inverse(x)[0])
    torch.testing.assert_close(Inverse(layer).inverse(x)[1], layer(x)[1])


def test_base_bijector_says_what_is_missing():
    with pytest.raises(NotImplementedError, match="Bijector does not implement forward"):
        Bijector()(torch.zeros(2, 2))


def test_standard_normal_matches_torch_distributions():
    base = StandardNormal((2, 3)).double()
    z = torch.randn(5, 2, 3, dtype=torch.float64)
    reference = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(dim=(1, 2))
    torch.testing.assert_close(base.log_prob(z), reference)
    assert base.sample(7).shape == (7, 2, 3) and base.sample(7).dtype == torch.float64
    assert base.sample((2, 4)).shape == (2, 4, 2, 3)
    assert StandardNormal(2).event_shape == torch.Size([2])


def test_standard_normal_sampling_is_seeded_and_tempered():
    base = StandardNormal(2)
    first = base.sample(1000, generator=torch.Generator().manual_seed(3))
    again = base.sample(1000, generator=torch.Generator().manual_seed(3))
    cold = base.sample(1000, temperature=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    torch.testing.assert_close(cold, 0.5 * first)


def test_flow_log_prob_is_the_change_of_variables():
    # x = μ + σ·z with z ~ N(0, I): the flow's density must be N(μ, σ²) exactly.
    layer = ExpAffine(3).double()  # z = x·exp(s) + t, so x = (z − t)·exp(−s)
    flow = Flow(layer, StandardNormal(3)).double()
    x = vectors(dim=3).double()
    sigma = torch.exp(-layer.s)
    mu = -layer.t * sigma
    expected = torch.distributions.Normal(mu, sigma).log_prob(x).sum(dim=1)
    torch.testing.assert_close(flow.log_prob(x), expected)
    torch.testing.assert_close(flow.forward_kl(x), -expected.mean())


def test_flow_density_integrates_to_one_in_1d():
    flow = Flow(Compose(ExpAffine(1)), StandardNormal(1)).double()
    grid = torch.linspace(-12, 12, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    assert abs(torch.trapezoid(density, grid[:, 0]).item() - 1) < 1e-8


def test_sample_and_log_prob_uses_the_generative_direction_only():
    flow = Flow(ForwardForbidden(2), StandardNormal(2)).double()
    x, log_prob = flow.sample_and_log_prob(50, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 2) and log_prob.shape == (50,)
    assert log_prob.requires_grad
    reference = Flow(ExpAffine(2), StandardNormal(2)).double()
    reference.load_state_dict(flow.state_dict())
    torch.testing.assert_close(log_prob, reference.log_prob(x))


def test_sample_is_seeded_and_detached():
    flow = Flow(stack(2), StandardNormal(2))
    first = flow.sample(64, generator=torch.Generator().manual_seed(1))
    second = flow.sample(64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, second) and not first.requires_grad


def test_reverse_kl_is_zero_for_the_target_itself_and_positive_otherwise():
    flow = Flow(Compose(), StandardNormal(2)).double()
    log_normal = StandardNormal(2).double().log_prob
    generator = torch.Generator().manual_seed(0)
    assert flow.reverse_kl(log_normal, 100, generator=generator).abs().item() < 1e-12
    log_z = math.log(2 * math.pi) + 2 * math.log(2.0)  # N(0, 4I) unnormalized: −‖x‖²/8
    estimate = flow.reverse_kl(lambda x: -x.square().sum(1) / 8, 20000, generator=generator)
    exact = math.log(2) * 2 + 2 * (0.25 - 1) / 2  # KL(N(0, I) ‖ N(0, 4I)) in 2D
    assert abs(estimate.item() + log_z - exact) < 0.02


def test_reverse_kl_has_gradients():
    flow = Flow(ExpAffine(2), StandardNormal(2))
    loss = flow.reverse_kl(lambda x: -x.square().sum(1), 32)
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.zeros(4, 3), ValueError, "must have 2 elements"),
        (torch.zeros(2), ValueError, "at least 2 dimensions"),
        (torch.zeros(4, 2, dtype=torch.long), TypeError, "floating dtype"),
        (torch.zeros(4, 2, dtype=torch.float64), TypeError, "dtype torch.float64 but"),
        ([[0.0, 0.0]], TypeError, "must be a torch.Tensor"),
    ],
)
def test_flow_log_prob_refuses_bad_input(x, error, match):
    flow = Flow(ExpAffine(2), StandardNormal(2))
    with pytest.raises(error, match=match):
        flow.log_prob(x)


def test_flow_refuses_bad_parts_and_bad_targets():
    with pytest.raises(TypeError, match="bijector must have forward and inverse"):
        Flow(nn.Linear(2, 2), StandardNormal(2))
    with pytest.raises(TypeError, match="base must have log_prob"):
        Flow(ExpAffine(2), nn.Identity())
    with pytest.raises(ValueError, match="event_shape must be positive"):
        StandardNormal((2, 0))
    flow = Flow(ExpAffine(2), StandardNormal(2))
    with pytest.raises(ValueError, match="log_target must return shape"):
        flow.reverse_kl(lambda x: x.sum(), 8)
