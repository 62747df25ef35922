"""Tests of nf_course.bijectors.coupling: NICE and RealNVP coupling layers, vectors and images.

A fresh coupling is the identity (its conditioner's output layer is zero), which would hide
almost every bug, so the property tests run on layers whose parameters are perturbed by
seeded noise (:func:`perturbed`). Everything is seeded and runs in float64 unless it says
otherwise.
"""

from __future__ import annotations

import pytest
import torch
from helpers import banana, held_out_nll_before_and_after, perturbed, randn
from torch import Tensor

from nf_course import Compose, Flow, StandardNormal
from nf_course.bijectors.coupling import AdditiveCoupling, AffineCoupling, AffineCoupling2d
from nf_course.bijectors.spline import SplineCoupling
from nf_course.checks import brute_force_jacobian, brute_force_log_det, check_bijector

VECTOR_COUPLINGS = [AdditiveCoupling, AffineCoupling]
# (mask, (C, H, W)): non-square images, odd sizes, an odd number of channels.
IMAGE_CASES = [
    ("checkerboard", (2, 4, 6)),
    ("checkerboard", (1, 5, 3)),
    ("channel", (2, 4, 6)),
    ("channel", (3, 5, 3)),
]


def image_mask(layer: AffineCoupling2d, x: Tensor) -> Tensor:
    """The layer's conditioning mask, flattened to ``(C·H·W,)`` in the order of ``x[b]``."""
    return layer.mask(x.shape[2], x.shape[3]).reshape(-1)


# ----------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("batch", [2, 16])
@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("cls", VECTOR_COUPLINGS)
def test_vector_couplings_pass_the_checker(cls, dim, parity, batch):
    layer = perturbed(cls(dim, hidden=16, parity=parity))
    check_bijector(layer, randn(batch, dim, seed=1))


@pytest.mark.parametrize("batch", [2, 16])
@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "shape"), IMAGE_CASES)
def test_image_coupling_passes_the_checker(mask, shape, parity, batch):
    layer = perturbed(AffineCoupling2d(shape[0], hidden=8, mask=mask, parity=parity))
    check_bijector(layer, randn(batch, *shape, seed=1))


# ----------------------------------------------------------------------------- initialization


@pytest.mark.parametrize(
    "layer",
    [
        AdditiveCoupling(3),
        AffineCoupling(3),
        AffineCoupling2d(3),
        AffineCoupling2d(3, mask="channel"),
    ],
    ids=["additive", "affine", "image-checkerboard", "image-channel"],
)
def test_a_fresh_layer_is_the_identity(layer):
    x = (
        randn(4, 3, 5, 4, seed=1).float()
        if isinstance(layer, AffineCoupling2d)
        else randn(4, 3, seed=1).float()
    )
    for method in (layer.forward, layer.inverse):
        out, log_det = method(x)
        assert torch.equal(out, x), f"{method.__name__} of a fresh layer is not the identity"
        assert torch.equal(log_det, torch.zeros(4)), f"{method.__name__} log-det is not 0"


# ----------------------------------------------------------------------------- masks


def test_masks_alternate_and_parity_flips_them():
    assert AffineCoupling(5).mask.tolist() == [True, False, True, False, True]
    assert torch.equal(AdditiveCoupling(5, parity=1).mask, ~AffineCoupling(5).mask)
    board = AffineCoupling2d(2).mask(3, 4)
    assert board.shape == (2, 3, 4)
    even_row, odd_row = [True, False, True, False], [False, True, False, True]
    assert board[0].tolist() == [even_row, odd_row, even_row]
    assert torch.equal(AffineCoupling2d(2, parity=1).mask(3, 4), ~board)
    channels = AffineCoupling2d(3, mask="channel").mask(2, 2)
    assert channels[:, 0, 0].tolist() == [True, False, False]
    assert torch.equal(AffineCoupling2d(3, mask="channel", parity=1).mask(2, 2), ~channels)


# ----------------------------------------------------------------------------- Jacobian structure


def test_additive_coupling_is_volume_preserving():
    layer = perturbed(AdditiveCoupling(5, hidden=16))
    x = randn(8, 5, seed=1)
    z, forward_log_det = layer(x)
    _, inverse_log_det = layer.inverse(z)
    assert torch.equal(forward_log_det, torch.zeros(8, dtype=torch.float64))
    assert torch.equal(inverse_log_det, torch.zeros(8, dtype=torch.float64))
    assert brute_force_log_det(layer, x).abs().max() < 1e-12
    assert brute_force_log_det(layer.inverse, z).abs().max() < 1e-12


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("dim", [4, 5])
@pytest.mark.parametrize("cls", VECTOR_COUPLINGS)
def test_vector_jacobian_is_block_triangular(cls, dim, parity):
    layer = perturbed(cls(dim, hidden=16, parity=parity))
    x = randn(6, dim, seed=1)
    z, log_det = layer(x)
    A, B = layer.mask, ~layer.mask
    assert torch.equal(z[:, A], x[:, A]), "the conditioning part x_A must pass through unchanged"
    jacobian = brute_force_jacobian(layer, x)
    identity = torch.eye(int(A.sum()), dtype=torch.float64).expand(6, -1, -1)
    assert torch.equal(jacobian[:, A][:, :, A], identity), "∂z_A/∂x_A must be the identity"
    assert torch.count_nonzero(jacobian[:, A][:, :, B]) == 0, "∂z_A/∂x_B must be zero"
    block_BB = jacobian[:, B][:, :, B]
    diagonal = torch.diagonal(block_BB, dim1=1, dim2=2)
    assert torch.equal(block_BB, torch.diag_embed(diagonal)), "∂z_B/∂x_B must be diagonal"
    torch.testing.assert_close(diagonal.log().sum(dim=1), log_det)
    assert torch.count_nonzero(jacobian[:, B][:, :, A]) > 0, "z_B must depend on x_A"


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("mask", "shape"), IMAGE_CASES)
def test_image_jacobian_is_block_triangular(mask, shape, parity):
    layer = perturbed(AffineCoupling2d(shape[0], hidden=8, mask=mask, parity=parity))
    x = randn(3, *shape, seed=1)
    z, log_det = layer(x)
    A = image_mask(layer, x)
    B = ~A
    flat_x, flat_z = x.reshape(3, -1), z.reshape(3, -1)
    assert torch.equal(flat_z[:, A], flat_x[:, A]), "x_A must pass through unchanged"
    jacobian = brute_force_jacobian(layer, x)
    assert torch.count_nonzero(jacobian[:, A][:, :, B]) == 0, "∂z_A/∂x_B must be zero"
    block_BB = jacobian[:, B][:, :, B]
    diagonal = torch.diagonal(block_BB, dim1=1, dim2=2)
    assert torch.equal(block_BB, torch.diag_embed(diagonal)), "∂z_B/∂x_B must be diagonal"
    # The log-det sums s over the moved elements only (the ∂z_A/∂x_A block is the identity).
    torch.testing.assert_close(diagonal.log().sum(dim=1), log_det)


@pytest.mark.parametrize("cls", VECTOR_COUPLINGS)
def test_two_alternating_layers_mix_two_and_three_dimensions(cls):
    for dim in (2, 3):
        stack = perturbed(Compose(cls(dim, hidden=16), cls(dim, hidden=16, parity=1)))
        jacobian = brute_force_jacobian(stack, randn(5, dim, seed=1))
        assert torch.count_nonzero(jacobian) == jacobian.numel(), f"dim {dim}: a zero entry"


@pytest.mark.parametrize("dim", [4, 6])
@pytest.mark.parametrize("cls", VECTOR_COUPLINGS)
def test_in_general_three_alternating_layers_are_needed_to_mix(cls, dim):
    # Two layers: z_b stays a function of x_A and x_b only, for b in the first layer's B.
    layers = [cls(dim, hidden=16, parity=k % 2) for k in range(3)]
    x = randn(5, dim, seed=1)
    two = brute_force_jacobian(perturbed(Compose(*layers[:2])), x)
    moved_first = ~layers[0].mask
    expected_zero = moved_first[:, None] & moved_first[None, :] & ~torch.eye(dim, dtype=bool)
    assert torch.equal(two == 0, expected_zero.expand_as(two))
    three = brute_force_jacobian(perturbed(Compose(*layers)), x)
    assert torch.count_nonzero(three) == three.numel()


# ----------------------------------------------------------------------------- stable scale


@pytest.mark.parametrize(
    "layer",
    [AffineCoupling(4, hidden=16), AffineCoupling2d(2, hidden=8, mask="channel")],
    ids=["vector", "image"],
)
def test_log_scale_stays_bounded_for_huge_conditioner_outputs(layer):
    layer = perturbed(layer)
    with torch.no_grad():
        layer.net[-1].weight.mul_(1e4)
    x = randn(4, 2, 3, 3, seed=1) if isinstance(layer, AffineCoupling2d) else randn(4, 4, seed=1)
    z, log_det = layer(x)
    x_back, _ = layer.inverse(z)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    n_moved = x[0].numel() // 2
    bound = layer.scale.abs().max() * n_moved
    assert (log_det.abs() <= bound).all(), "|Σ s| must not exceed Σ |a|"
    torch.testing.assert_close(x_back, x)


# ----------------------------------------------------------------------------- fitting


def test_affine_couplings_fit_a_banana_by_forward_kl():
    torch.manual_seed(0)
    layers = [AffineCoupling(2, hidden=16, parity=k % 2) for k in range(4)]
    flow = Flow(Compose(*layers), StandardNormal(2))
    train, test = banana(1024, seed=0), banana(2048, seed=1)
    before, after = held_out_nll_before_and_after(flow, train, test, steps=100, lr=1e-2)
    # Identity flow: ≈ 2.70 nats; the data's entropy, the best reachable value: ≈ 1.63 nats.
    assert after < before - 0.7, f"held-out NLL went from {before:.3f} to {after:.3f} only"


# ----------------------------------------------------------------------------- own conditioners


def _vector_net(dim: int, outputs_per_coordinate: int, parity: int) -> torch.nn.Module:
    """A conditioner unlike the default mlp: one Tanh layer, ``(B, |A|) -> (B, k·|B|)``."""
    moved = dim // 2 if parity == 0 else (dim + 1) // 2
    return torch.nn.Sequential(
        torch.nn.Linear(dim - moved, 7),
        torch.nn.Tanh(),
        torch.nn.Linear(7, outputs_per_coordinate * moved),
    )


@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize(("cls", "outputs"), [(AdditiveCoupling, 1), (AffineCoupling, 2)])
def test_vector_couplings_take_a_conditioner_of_ones_own(cls, outputs, parity):
    net = _vector_net(5, outputs, parity)
    layer = perturbed(cls(5, parity=parity, net=net))
    assert layer.net is net
    check_bijector(layer, randn(8, 5, seed=2))


@pytest.mark.parametrize(("mask", "reads", "writes"), [("checkerboard", 3, 6), ("channel", 1, 4)])
def test_image_coupling_takes_a_conditioner_of_ones_own(mask, reads, writes):
    net = torch.nn.Sequential(torch.nn.Conv2d(reads, writes, kernel_size=1), torch.nn.Tanh())
    layer = perturbed(AffineCoupling2d(3, mask=mask, net=net))
    check_bijector(layer, randn(4, 3, 4, 5, seed=2))


def test_a_conditioner_of_the_wrong_size_or_kind_is_named():
    layer = AffineCoupling(4, net=torch.nn.Linear(2, 3))
    with pytest.raises(
        ValueError,
        match=r"AffineCoupling: the conditioner net must return shape "
        r"\(6, 4\) for an input of shape \(6, 2\), got \(6, 3\)",
    ):
        layer(torch.zeros(6, 4))
    image = AffineCoupling2d(2, net=torch.nn.Conv2d(2, 2, kernel_size=1))
    with pytest.raises(ValueError, match=r"must return shape \(1, 4, 3, 3\).*got \(1, 2, 3, 3\)"):
        image(torch.zeros(1, 2, 3, 3))
    with pytest.raises(
        TypeError, match=r"AdditiveCoupling: net must be a torch\.nn\.Module, got function"
    ):
        AdditiveCoupling(3, net=lambda y: y)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls", [*VECTOR_COUPLINGS, SplineCoupling])
def test_vector_couplings_refuse_bad_arguments(cls):
    with pytest.raises(ValueError, match=f"{cls.__name__}: dim must be at least 2, got 1"):
        cls(1)
    with pytest.raises(TypeError, match="dim must be an int, got float"):
        cls(2.0)
    with pytest.raises(ValueError, match="parity must be 0 or 1, got 2"):
        cls(3, parity=2)
    with pytest.raises(ValueError, match="hidden must be at least 1, got 0"):
        cls(3, hidden=0)
    layer = cls(3)
    with pytest.raises(ValueError, match=rf"{cls.__name__}.forward: x must have shape \(B, 3\)"):
        layer(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=rf"{cls.__name__}.inverse: z must have shape \(B, 3\)"):
        layer.inverse(torch.zeros(3))
    with pytest.raises(TypeError, match="floating dtype"):
        layer(torch.zeros(5, 3, dtype=torch.long))


def test_image_coupling_refuses_bad_arguments():
    with pytest.raises(ValueError, match="unknown mask 'stripes'; choose one of 'checkerboard', "):
        AffineCoupling2d(2, mask="stripes")
    with pytest.raises(ValueError, match="mask='channel' needs channels ≥ 2"):
        AffineCoupling2d(1, mask="channel")
    layer = AffineCoupling2d(2)
    with pytest.raises(ValueError, match=r"batch of images \(B, 2, H, W\).*use AffineCoupling"):
        layer(torch.zeros(4, 8))
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\), got shape \(1, 3, 4, 4\)"):
        layer.inverse(torch.zeros(1, 3, 4, 4))
