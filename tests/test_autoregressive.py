"""Tests of nf_course.bijectors.autoregressive: the masked network MADE and the layers MAF, IAF.

A fresh MAF or IAF is the identity (MADE's output layer is zero), which would hide almost every
bug, so the property tests run on layers whose parameters are perturbed by seeded noise
(:func:`perturbed`). Everything is seeded and runs in float64 unless it says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from helpers import banana, held_out_nll_before_and_after, perturbed, randn
from torch import Tensor

from nf_course import Compose, Flow, StandardNormal
from nf_course.bijectors.autoregressive import IAF, MADE, MAF, MaskedLinear
from nf_course.checks import brute_force_jacobian, check_bijector

LAYERS = [MAF, IAF]
ORDERS = ["natural", "reversed", "random"]
HIDDEN = [(16,), (16, 12)]


def in_order(jacobian: Tensor, order: Tensor) -> Tensor:
    """``jacobian (B, D, D)`` with rows and columns sorted by the ordering (first to last)."""
    return jacobian[:, order][:, :, order]


def assert_autoregressive(jacobian: Tensor, order: Tensor, *, strict: bool) -> None:
    """Fail unless output ``i`` depends only on inputs before ``i`` (or ``i`` itself if not strict).

    ``jacobian (B, D, D)`` holds ``∂out_i/∂x_j``; in the ordering it must be lower triangular,
    with a zero diagonal as well when ``strict``. Entries must be exactly 0, not small.
    """
    above = torch.triu(in_order(jacobian, order), diagonal=0 if strict else 1)
    assert torch.count_nonzero(above) == 0, (
        f"an output depends on an input that does not come before it: {above.abs().max():.3g}"
    )


@contextmanager
def counting_passes(layer: MAF | IAF) -> Iterator[list[int]]:
    """Count the calls of ``layer.made`` inside the block, in ``counter[0]``."""
    counter = [0]

    def hook(module: object, inputs: object, output: object) -> None:
        counter[0] += 1

    handle = layer.made.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


# ----------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("batch", [2, 16])
@pytest.mark.parametrize("hidden", HIDDEN, ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("cls", LAYERS)
def test_layers_pass_the_checker(cls, order, hidden, batch):
    layer = perturbed(cls(4, hidden=hidden, order=order, seed=3))
    check_bijector(layer, randn(batch, 4, seed=1))


@pytest.mark.parametrize("cls", LAYERS)
def test_one_dimension_and_no_hidden_layer_work(cls):
    check_bijector(perturbed(cls(1, hidden=(8,))), randn(4, 1, seed=1))
    check_bijector(perturbed(cls(3, hidden=())), randn(4, 3, seed=1))


# ----------------------------------------------------------------------------- initialization


@pytest.mark.parametrize("cls", LAYERS)
def test_a_fresh_layer_is_the_identity(cls):
    layer = cls(3, order="random")
    x = randn(5, 3, seed=1).float()
    for method in (layer.forward, layer.inverse):
        out, log_det = method(x)
        assert torch.equal(out, x), f"{method.__name__} of a fresh layer is not the identity"
        assert torch.equal(log_det, torch.zeros(5)), f"{method.__name__} log-det is not 0"


# ----------------------------------------------------------------------------- MADE


@pytest.mark.parametrize("hidden", [(), (16,), (16, 12, 8)], ids=["0", "1", "3"])
@pytest.mark.parametrize("order", [*ORDERS, [2, 0, 4, 1, 3]])
def test_made_outputs_depend_only_on_earlier_inputs(order, hidden):
    made = perturbed(MADE(5, hidden=hidden, outputs_per_dim=3, order=order, seed=7))
    x = randn(4, 5, seed=1)
    assert made(x).shape == (4, 3, 5)
    jacobian = brute_force_jacobian(made, x).reshape(4, 3, 5, 5)
    for p in range(3):
        assert_autoregressive(jacobian[:, p], made.order, strict=True)
    assert torch.count_nonzero(jacobian) > 0


@pytest.mark.parametrize("order", ["natural", "reversed", [2, 0, 4, 1, 3]])
def test_made_with_cyclic_degrees_connects_every_earlier_input(order):
    made = perturbed(MADE(5, hidden=(8, 8), order=order))
    jacobian = in_order(
        brute_force_jacobian(made, randn(3, 5, seed=1)).reshape(3, 2, 5, 5)[:, 1], made.order
    )
    below = torch.tril(torch.ones(5, 5, dtype=torch.bool), diagonal=-1)
    assert (jacobian[:, below] != 0).all(), "some output ignores an input that comes before it"


def test_the_autoregressive_check_catches_a_mask_that_lets_x_i_see_itself():
    made = perturbed(MADE(4, hidden=(16,), order="reversed"))
    x = randn(3, 4, seed=1)
    assert_autoregressive(brute_force_jacobian(made, x).reshape(3, 8, 4), made.order, strict=True)
    # The off-by-one bug: ">=" instead of ">" in the output mask.
    output_degrees = made.degrees[0].repeat(2)
    broken = output_degrees[:, None] >= made.degrees[-1][None, :]
    made.layers[-1].mask.copy_(broken)
    jacobian = brute_force_jacobian(made, x).reshape(3, 2, 4, 4)
    with pytest.raises(AssertionError, match="does not come before it"):
        assert_autoregressive(jacobian[:, 0], made.order, strict=True)


def test_made_orders_and_masks():
    assert MADE(4, order="natural").order.tolist() == [0, 1, 2, 3]
    assert MADE(4, order="reversed").order.tolist() == [3, 2, 1, 0]
    first, again = MADE(6, order="random", seed=1), MADE(6, order="random", seed=1)
    assert sorted(first.order.tolist()) == list(range(6))
    assert torch.equal(first.order, again.order), "the random order must follow the seed"
    for a, b in zip(first.layers, again.layers, strict=True):
        assert torch.equal(a.mask, b.mask)
    assert not torch.equal(first.order, MADE(6, order="random", seed=2).order)
    made = MADE(3, hidden=(4,))
    assert all(isinstance(layer, MaskedLinear) for layer in made.layers)
    assert made.degrees[1].tolist() == [1, 2, 1, 2], "hidden degrees cycle through 1..D-1"
    assert "mask" in dict(made.layers[0].named_buffers())
    assert torch.equal(made(randn(2, 3, seed=1).float()), torch.zeros(2, 2, 3)), (
        "output starts at 0"
    )


# ----------------------------------------------------------------------------- Jacobian


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("cls", LAYERS)
def test_jacobian_is_triangular_and_log_det_sums_its_diagonal(cls, order):
    layer = perturbed(cls(5, hidden=(16,), order=order, seed=2))
    x = randn(6, 5, seed=1)
    for method, point in ((layer.forward, x), (layer.inverse, layer(x)[0].detach())):
        _, log_det = method(point)
        jacobian = brute_force_jacobian(method, point)
        assert_autoregressive(jacobian, layer.made.order, strict=False)
        diagonal = torch.diagonal(jacobian, dim1=1, dim2=2)
        assert (diagonal > 0).all()
        torch.testing.assert_close(diagonal.log().sum(dim=1), log_det)


def test_each_layer_adds_its_shift_after_the_scale_in_its_one_pass_direction():
    """MAF's MADE outputs the shift in units of the scale, m = mu e^-alpha, and the raw h of a
    softplus scale e^-alpha = softplus(h + b) + e^-c, so forward is z = x e^-alpha - m; IAF's
    outputs mu itself and alpha = c tanh(h / c), so inverse is x = mu + e^alpha z. Both are the
    Gaussian layer of chapter 7 (same maps, same densities); the parametrization is what
    training sees (benchmarks/layer_ablation.py)."""
    x = randn(6, 4, seed=3)
    maf, iaf = perturbed(MAF(4, hidden=(16,))), perturbed(IAF(4, hidden=(16,)), seed=1)
    m, h = maf.made(x).unbind(dim=1)
    floor = math.exp(-maf.alpha_bound)
    scale = torch.nn.functional.softplus(h + math.log(math.expm1(1 - floor))) + floor
    mu, alpha = maf.conditioner(x)
    torch.testing.assert_close(alpha, -scale.log())
    torch.testing.assert_close(mu, torch.exp(alpha) * m)
    torch.testing.assert_close(maf(x)[0], x * scale - m)
    mu, h = iaf.made(x).unbind(dim=1)
    alpha = iaf.alpha_bound * torch.tanh(h / iaf.alpha_bound)
    torch.testing.assert_close(iaf.inverse(x)[0], mu + torch.exp(alpha) * x)


@pytest.mark.parametrize("alpha_bound", [0.5, 3.0, math.log(1e3)])
def test_fresh_maf_scale_is_one_for_any_bound(alpha_bound):
    x = randn(5, 3, seed=2)
    z, log_det = MAF(3, hidden=(8,), alpha_bound=alpha_bound).double()(x)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(log_det, torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("cls", LAYERS)
def test_log_scale_stays_bounded_for_huge_conditioner_outputs(cls, sign):
    """IAF's |alpha| <= c (tanh saturates in floating point); MAF's alpha <= c, and its density
    scale e^-alpha grows only linearly with MADE's output, so that z stays finite."""
    layer = perturbed(cls(4, hidden=(16,)))
    with torch.no_grad():
        layer.made.layers[-1].weight.mul_(sign * 1e4)
    x = randn(8, 4, seed=1)
    z, log_det = layer(x)
    _, alpha = layer.conditioner(z if cls is IAF else x)
    assert torch.isfinite(z).all() and torch.isfinite(log_det).all()
    assert (alpha <= layer.alpha_bound).all()
    if cls is IAF:
        assert (alpha >= -layer.alpha_bound).all()
    torch.testing.assert_close(log_det, -alpha.sum(dim=1))


# ----------------------------------------------------------------------------- cost


@pytest.mark.parametrize("dim", [1, 3, 6])
def test_maf_density_takes_one_pass_and_sampling_takes_d(dim):
    layer = MAF(dim, hidden=(8,))
    x = randn(4, dim, seed=1).float()
    with counting_passes(layer) as passes:
        layer(x)
    assert passes[0] == 1
    with counting_passes(layer) as passes:
        layer.inverse(x)
    assert passes[0] == dim


@pytest.mark.parametrize("dim", [1, 3, 6])
def test_iaf_sampling_takes_one_pass_and_density_takes_d(dim):
    layer = IAF(dim, hidden=(8,))
    x = randn(4, dim, seed=1).float()
    with counting_passes(layer) as passes:
        layer.inverse(x)
    assert passes[0] == 1
    with counting_passes(layer) as passes:
        layer(x)
    assert passes[0] == dim


# ----------------------------------------------------------------------------- fitting


def test_maf_fits_a_banana_by_forward_kl():
    torch.manual_seed(0)
    orders = ["natural", "reversed", "natural", "reversed"]
    flow = Flow(Compose(*[MAF(2, hidden=(16, 16), order=o) for o in orders]), StandardNormal(2))
    train, test = banana(1024, seed=0), banana(2048, seed=1)
    before, after = held_out_nll_before_and_after(flow, train, test, steps=100, lr=1e-2)
    # Identity flow: ≈ 2.70 nats; the data's entropy, the best reachable value: ≈ 1.63 nats.
    assert after < before - 0.7, f"held-out NLL went from {before:.3f} to {after:.3f} only"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls", [*LAYERS, MADE])
def test_bad_arguments_are_refused_clearly(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=f"{name}: dim must be at least 1, got 0"):
        cls(0)
    with pytest.raises(TypeError, match=f"{name}: dim must be an int, got float"):
        cls(2.0)
    with pytest.raises(ValueError, match=f"{name}: unknown order 'sideways'; choose one of "):
        cls(3, order="sideways")
    with pytest.raises(ValueError, match=r"a permutation of 0..2, got \[0, 0, 1\]"):
        cls(3, order=[0, 0, 1])
    with pytest.raises(TypeError, match=f"{name}: hidden must be a sequence of widths"):
        cls(3, hidden=64)
    with pytest.raises(ValueError, match="each hidden width must be at least 1, got 0"):
        cls(3, hidden=(8, 0))


@pytest.mark.parametrize("cls", LAYERS)
def test_wrong_inputs_are_refused_clearly(cls):
    layer = cls(3)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}.forward: x must have shape \(B, 3\)"):
        layer(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=rf"{name}.inverse: z must have shape \(B, 3\)"):
        layer.inverse(torch.zeros(3))
    with pytest.raises(TypeError, match="floating dtype"):
        layer(torch.zeros(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha_bound must be positive, got 0"):
        cls(3, alpha_bound=0)
    with pytest.raises(ValueError, match=r"MADE.forward: x must have shape \(B, 3\)"):
        layer.made(torch.zeros(2, 2))
