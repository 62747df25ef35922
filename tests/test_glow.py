"""Tests of nf_course.bijectors.glow: ActNorm, Squeeze, GlowStep and the multi-scale Glow."""

from __future__ import annotations

import pytest
import torch
from helpers import perturbed
from torch import Tensor

from nf_course import Flow, StandardNormal
from nf_course.bijectors.coupling import AffineCoupling2d
from nf_course.bijectors.glow import ActNorm, Glow, GlowStep, Squeeze
from nf_course.checks import check_bijector


def _images(batch: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """A float64 batch ``(batch, *shape)`` with a channel-dependent mean and scale."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=generator, dtype=torch.float64)
    channels = shape[0]
    offsets = torch.linspace(-2.0, 3.0, channels, dtype=torch.float64)
    scales = torch.linspace(0.5, 4.0, channels, dtype=torch.float64)
    view = (channels,) + (1,) * (len(shape) - 1)
    return x * scales.reshape(view) + offsets.reshape(view)


def _initialized(module: torch.nn.Module, shape: tuple[int, ...]) -> torch.nn.Module:
    """``module`` in float64, its ActNorms initialized on a batch of 16, then perturbed."""
    module = module.double()
    with torch.no_grad():
        module(_images(16, shape, seed=100))
    return perturbed(module)


def _digits(batch: int, seed: int) -> Tensor:
    """A stand-in for dequantized 8x8 digits: bars and blocks on 17 grey levels, in [0, 1).

    Pixel values are integers 0…16 (as in scikit-learn's digits) plus uniform dequantization
    noise, divided by 17.
    """
    generator = torch.Generator().manual_seed(seed)
    levels = torch.zeros(batch, 1, 8, 8)
    for index in range(batch):
        row, column = torch.randint(1, 6, (2,), generator=generator).tolist()
        intensity = float(torch.randint(8, 17, (), generator=generator))
        levels[index, 0, row : row + 2, 1:7] = intensity
        levels[index, 0, 1:7, column : column + 2] = intensity
    noise = torch.rand(levels.shape, generator=generator)
    return (levels + noise) / 17


# ----------------------------------------------------------------------------- checker


@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("shape", [(4, 2, 6), (3,)])
def test_actnorm_passes_checker(batch: int, shape: tuple[int, ...]) -> None:
    layer = _initialized(ActNorm(shape[0]), shape)
    check_bijector(layer, _images(batch, shape, seed=batch))


@pytest.mark.parametrize("batch", [2, 8])
def test_squeeze_passes_checker(batch: int) -> None:
    check_bijector(Squeeze(), _images(batch, (3, 4, 6), seed=batch))


@pytest.mark.parametrize("batch", [2, 8])
def test_glow_step_passes_checker(batch: int) -> None:
    step = _initialized(GlowStep(4, hidden=8), (4, 2, 6))
    check_bijector(step, _images(batch, (4, 2, 6), seed=batch))


@pytest.mark.parametrize("split_prior", [False, True])
@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 8, 4), (2, 4, 4)])
def test_glow_passes_checker(batch: int, shape: tuple[int, ...], split_prior: bool) -> None:
    glow = Glow(shape[0], steps_per_level=2, hidden=8, split_prior=split_prior)
    check_bijector(_initialized(glow, shape), _images(batch, shape, seed=batch))


def test_checker_initializes_a_fresh_actnorm_on_its_copy() -> None:
    layer = ActNorm(4).double()
    check_bijector(layer, _images(8, (4, 2, 6), seed=0))
    assert not layer.initialized


# ----------------------------------------------------------------------------- ActNorm


def test_actnorm_first_batch_is_normalized_per_channel() -> None:
    x = _images(32, (4, 3, 5), seed=1)
    z, _ = ActNorm(4).double()(x)
    per_channel = z.transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(4, dtype=torch.float64))
    # Up to ActNorm's eps = 1e-6, added to the standard deviation.
    torch.testing.assert_close(
        per_channel.std(dim=1, unbiased=False),
        torch.ones(4, dtype=torch.float64),
        rtol=0,
        atol=1e-5,
    )


def test_actnorm_initializes_only_once() -> None:
    layer = ActNorm(4).double()
    layer(_images(32, (4, 3, 5), seed=1))
    loc, log_scale = layer.loc.detach().clone(), layer.log_scale.detach().clone()
    other = 10 * _images(32, (4, 3, 5), seed=2) - 7
    z, _ = layer(other)
    assert torch.equal(layer.loc, loc) and torch.equal(layer.log_scale, log_scale)
    assert z.mean().abs() > 1  # the second batch is not standardized


def test_actnorm_state_dict_keeps_initialization() -> None:
    layer = ActNorm(4).double()
    layer(_images(32, (4, 3, 5), seed=1))
    fresh = ActNorm(4).double()
    fresh.load_state_dict(layer.state_dict())
    assert fresh.initialized
    x = _images(8, (4, 3, 5), seed=3)
    z, log_det = layer(x)
    z_fresh, log_det_fresh = fresh(x)
    assert torch.equal(z, z_fresh) and torch.equal(log_det, log_det_fresh)


def test_actnorm_log_det_has_the_pixel_factor() -> None:
    layer = ActNorm(3).double()
    layer(_images(16, (3, 4, 6), seed=1))
    per_pixel = -layer.log_scale.sum()
    for height, width in [(4, 6), (2, 2), (1, 5)]:
        _, log_det = layer(_images(2, (3, height, width), seed=2))
        torch.testing.assert_close(log_det, (height * width * per_pixel).expand(2))


def test_actnorm_inverse_before_forward_raises() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        ActNorm(2).inverse(torch.randn(3, 2, 4, 4))


def test_actnorm_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ActNorm(3)(torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError):
        ActNorm(3)(torch.randn(2, 3, 5))


# ----------------------------------------------------------------------------- Squeeze


def test_squeeze_jacobian_is_a_permutation_matrix() -> None:
    x = _images(1, (2, 4, 6), seed=0)
    jacobian = torch.autograd.functional.jacobian(lambda t: Squeeze()(t)[0], x)
    matrix = jacobian.reshape(x.numel(), x.numel())
    assert ((matrix == 0) | (matrix == 1)).all()
    assert torch.equal(matrix.sum(dim=0), torch.ones(x.numel(), dtype=torch.float64))
    assert torch.equal(matrix.sum(dim=1), torch.ones(x.numel(), dtype=torch.float64))


def test_squeeze_layout_and_exact_round_trip() -> None:
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    z, log_det = Squeeze()(x)
    assert z.shape == (2, 12, 2, 3)
    assert torch.equal(log_det, torch.zeros(2))
    # Output channel 4c + 2a + b at pixel (i, j) is input channel c at pixel (2i + a, 2j + b).
    assert z[1, 4 * 2 + 2 * 1 + 0, 1, 2] == x[1, 2, 3, 4]
    x_back, log_det_inverse = Squeeze().inverse(z)
    assert torch.equal(x_back, x)
    assert torch.equal(log_det_inverse, torch.zeros(2))


def test_squeeze_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even"):
        Squeeze()(torch.randn(2, 1, 5, 4))
    with pytest.raises(ValueError, match="divisible by 4"):
        Squeeze().inverse(torch.randn(2, 3, 2, 2))


# ----------------------------------------------------------------------------- GlowStep, Glow


def test_glow_step_needs_two_channels() -> None:
    with pytest.raises(ValueError, match="Squeeze"):
        GlowStep(1)


def test_glow_rejects_wrong_shapes() -> None:
    glow = Glow(1)
    with pytest.raises(ValueError, match="divisible by 4"):
        glow(torch.randn(2, 1, 6, 6))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        glow(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError):
        glow(torch.randn(2, 64))


def test_glow_latent_layout() -> None:
    glow = Glow(1, levels=3, steps_per_level=1, hidden=8)
    assert glow.latent_shapes(8, 8) == [(2, 4, 4), (4, 2, 2), (16, 1, 1)]
    x = _digits(4, seed=0)
    z, _ = glow(x)
    assert z.shape == x.shape
    # The first factored-out part is the first half of the channels after level 1.
    h, _ = glow.levels[0](x)
    torch.testing.assert_close(z.flatten(1)[:, :32], h[:, :2].flatten(1))


def test_glow_split_prior_conditions_each_factored_half_on_the_half_that_goes_on() -> None:
    glow = Glow(1, levels=3, steps_per_level=1, hidden=8, split_prior=True)
    for level in glow.levels[:-1]:
        prior = level[-1]
        assert isinstance(prior, AffineCoupling2d) and prior.mask_type == "channel"
        # parity 1: the second half (kept) conditions the first (factored out).
        assert prior.index_B.tolist() == list(range(prior.channels // 2))
    assert not any(isinstance(layer, AffineCoupling2d) for layer in glow.levels[-1])
    with pytest.raises(TypeError, match="split_prior must be a bool"):
        Glow(1, split_prior=1)


def test_fresh_split_prior_is_the_standard_normal_prior() -> None:
    """Zero-initialized, the split prior is the identity: the same ``z`` and log-det as
    without it; once trained (perturbed), the factored-out half moves with the kept one."""
    x = _digits(8, seed=3).double()
    plain = Glow(1, steps_per_level=2, hidden=8).double()
    with_prior = Glow(1, steps_per_level=2, hidden=8, split_prior=True).double()
    z_plain, log_det_plain = plain(x)
    z_prior, log_det_prior = with_prior(x)
    torch.testing.assert_close(z_prior, z_plain, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_det_prior, log_det_plain, rtol=0, atol=1e-12)

    prior = with_prior.levels[0][-1]
    perturbed(prior)
    h = x
    for layer in with_prior.levels[0].bijectors[:-1]:  # the level before its split prior
        h, _ = layer(h)
    kept = h[:, 2:]
    moved, _ = prior(torch.cat([h[:, :2], kept], dim=1))
    other, _ = prior(torch.cat([h[:, :2], kept + 1], dim=1))
    assert (moved[:, :2] - other[:, :2]).abs().max() > 1e-3  # z_1 depends on the kept half
    torch.testing.assert_close(moved[:, 2:], kept)  # which passes unchanged
    z, _ = with_prior(x)
    torch.testing.assert_close(z.flatten(1)[:, :32], moved[:, :2].flatten(1))


def test_glow_sampling_before_any_data_raises() -> None:
    flow = Flow(Glow(1), StandardNormal((1, 8, 8)))
    with pytest.raises(RuntimeError, match=r"ActNorm\.inverse"):
        flow.sample(2)


def test_glow_flow_on_digits() -> None:
    torch.manual_seed(0)
    x = _digits(64, seed=0)
    flow = Flow(Glow(1), StandardNormal((1, 8, 8)))
    log_prob = flow.log_prob(x)
    assert log_prob.shape == (64,) and torch.isfinite(log_prob).all()

    samples = flow.sample(5, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (5, 1, 8, 8) and torch.isfinite(samples).all()

    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    before = flow.forward_kl(x).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = flow.forward_kl(x)
        loss.backward()
        optimizer.step()
    after = flow.forward_kl(x).item()
    assert after < before - 1.0
