"""Invertible residual flows: checker, spectral normalization, fixed-point inverse, estimators."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import banana, held_out_nll_before_and_after, perturbed, randn
from torch import Tensor

from nf_course import Compose, Flow, StandardNormal
from nf_course.bijectors.residual import (
    FixedPointConvergenceError,
    InvertibleResidual,
    LipschitzMLP,
    log_det_estimate,
    power_series_weights,
    residual_jacobian,
    series_partial_sums,
    series_truncation_bound,
)
from nf_course.checks import brute_force_jacobian, brute_force_log_det, check_bijector
from nf_course.common import default_tolerance


def strong_layer(**options: object) -> InvertibleResidual:
    """A float64 layer on R² whose Jacobian is close to its Lipschitz bound.

    One hidden layer of two units: ``W₁ = 0.9 I`` and ``b₁ = 2.4``, where LipSwish' ≈ 1, so
    near ``x = 0`` the Jacobian is ``J_r ≈ 0.9 W₂`` with eigenvalues ≈ -0.70 and -0.38 and
    ``‖J_r‖₂ ≈ 0.70``: the power series converges slowly and every term has the same sign.
    """
    layer = InvertibleResidual(2, hidden=2, layers=1, lipschitz=0.9, **options).double()
    with torch.no_grad():
        first, second = layer.linears
        first.weight.copy_(0.9 * torch.eye(2))
        first.bias.fill_(2.4)
        second.weight.copy_(torch.tensor([[-0.7, 0.2], [0.1, -0.5]]))
        second.bias.zero_()
    return layer


# ----------------------------------------------------------------------------- the checker


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("batch", [2, 16])
def test_check_bijector(dim: int, batch: int) -> None:
    layer = perturbed(InvertibleResidual(dim, hidden=16, seed=dim), seed=dim + batch, scale=0.3)
    x = 2 * randn(batch, dim, seed=1)
    report = check_bijector(layer, x, z=2 * randn(batch, dim, seed=2))
    assert report.passed and report.dtype == torch.float64
    # The inverse is differentiable itself (implicit gradients), not checked via forward.
    assert "inverse is not differentiable" not in report["log_det_inverse"].message


def test_check_bijector_with_elu_and_a_tight_bound() -> None:
    layer = perturbed(InvertibleResidual(3, activation="elu", lipschitz=0.99, layers=1), seed=4)
    report = check_bijector(layer, 2 * randn(8, 3, seed=5))
    assert report.passed


@pytest.mark.parametrize("seed", range(3))
def test_log_det_equals_brute_force(seed: int) -> None:
    layer = perturbed(InvertibleResidual(5, hidden=16, seed=seed), seed=seed, scale=0.5)
    x = 2 * randn(32, 5, seed=seed)
    z, log_det = layer(x)
    torch.testing.assert_close(log_det, brute_force_log_det(layer, x), rtol=1e-12, atol=1e-12)
    # The inverse's own autograd Jacobian: implicit gradients (I + J_r)^{-1} through the hook.
    _, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(
        inverse_log_det, brute_force_log_det(layer.inverse, z), rtol=1e-10, atol=1e-10
    )


def test_jacobian_and_exact_traces() -> None:
    layer = perturbed(InvertibleResidual(4, hidden=8), seed=1, scale=0.5)
    x = randn(6, 4, seed=3)
    jacobian = brute_force_jacobian(layer, x) - torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(layer.jacobian(x), jacobian, rtol=1e-12, atol=1e-12)
    traces = layer.exact_traces(x, 3)
    cube = jacobian @ jacobian @ jacobian
    torch.testing.assert_close(traces[:, 2], cube.diagonal(dim1=1, dim2=2).sum(dim=1))
    torch.testing.assert_close(traces[:, 0], jacobian.diagonal(dim1=1, dim2=2).sum(dim=1))


# ----------------------------------------------------------------------------- inverse


def test_fixed_point_residual_is_below_the_tolerance() -> None:
    layer = perturbed(InvertibleResidual(5, lipschitz=0.97, layers=1), seed=3, scale=0.3)
    z = 3 * randn(256, 5, seed=4)
    x, _ = layer.inverse(z)
    residual = (x + layer.residual(x) - z).abs().amax(dim=1)
    tol = default_tolerance(torch.float64)
    assert tol == 1e-12
    assert (residual <= tol * torch.clamp(z.abs().amax(dim=1), min=1)).all()


def test_inverse_error_within_the_banach_bounds() -> None:
    tol = 1e-4
    layer = perturbed(InvertibleResidual(3, layers=1, inverse_tol=tol), seed=5, scale=0.3)
    lipschitz = layer.lipschitz_bound(exact=True)
    assert 0.5 < lipschitz < 0.9**2 * (1 + 1e-12)
    x_true = 2 * randn(128, 3, seed=6)
    z, _ = layer(x_true)
    # A priori: successive steps contract, ‖x_{k+1} - x_k‖ ≤ L^k ‖x_1 - x_0‖ = L^k ‖r(z)‖, so
    # the residual ‖x_k + r(x_k) - z‖ = ‖x_k - x_{k+1}‖ is below the tolerance by this k.
    step = layer.residual(z).norm(dim=1)
    scale = torch.clamp(z.abs().amax(dim=1), min=1)
    needed = int(torch.ceil(torch.log(tol * scale / step) / math.log(lipschitz)).max())
    layer.inverse_max_iter = needed + 1
    x, _ = layer.inverse(z)
    # A posteriori: ‖x_k - x*‖ ≤ ‖residual‖/(1 - L); the returned point is one step further.
    error = (x - x_true).norm(dim=1)
    assert (error <= lipschitz * math.sqrt(3) * tol * scale / (1 - lipschitz)).all()
    assert error.max() > 1e-10  # the tolerance, not luck, bounds the error


def test_non_convergence_raises_a_clear_error() -> None:
    layer = perturbed(InvertibleResidual(4, inverse_max_iter=1), seed=0, scale=0.3)
    z = 3 * randn(8, 4)
    with pytest.raises(FixedPointConvergenceError) as info:
        layer.inverse(z)
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    assert "did not converge in inverse_max_iter=1 iterations" in message
    assert "largest residual" in message and "tol = 1e-12" in message
    layer.inverse_max_iter = 1000
    x, _ = layer.inverse(z)
    torch.testing.assert_close(layer(x)[0], z, rtol=0, atol=1e-11)


def test_adjoint_cap_raises_in_the_backward_pass() -> None:
    layer = perturbed(InvertibleResidual(3), seed=0, scale=0.3)
    x, _ = layer.inverse(randn(4, 3, seed=1))
    layer.inverse_max_iter = 1
    with pytest.raises(FixedPointConvergenceError, match="adjoint iteration"):
        x.sum().backward()


def test_inverse_gradients_equal_those_of_the_unrolled_iteration() -> None:
    layer = perturbed(InvertibleResidual(3, hidden=16), seed=2, scale=0.3)
    z = randn(6, 3, seed=7).requires_grad_(True)
    weights = randn(6, 3, seed=8)
    parameters = [z, *layer.parameters()]

    x, log_det = layer.inverse(z)
    implicit = torch.autograd.grad((x * weights).sum() + log_det.sum(), parameters)

    # The same map, differentiated through 200 plain iterations x ← z - r(x).
    x_unrolled = z
    for _ in range(200):
        x_unrolled = z - layer.residual(x_unrolled)
    unrolled = torch.autograd.grad(
        (x_unrolled * weights).sum() - layer(x_unrolled)[1].sum(), parameters
    )
    for got, want in zip(implicit, unrolled, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_inverse_in_float32() -> None:
    layer = perturbed(InvertibleResidual(5), seed=7, scale=0.3).float()
    x = 2 * randn(64, 5, seed=4).float()
    z, log_det = layer(x)
    x_rec, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(x_rec, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- spectral norm


def test_fresh_layer_respects_the_bound_and_is_deterministic() -> None:
    layer = InvertibleResidual(3).double().train()
    assert layer.lipschitz_bound(exact=True) <= 0.9**3 * (1 + 1e-12)
    x = randn(16, 3)
    first = layer(x)
    vectors = [buffer.clone() for buffer in layer.buffers()]
    second = layer(x)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert all(torch.equal(a, b) for a, b in zip(vectors, layer.buffers(), strict=True))
    keys = set(layer.state_dict())
    assert {"net.linears.0.left", "net.linears.0.right", "net.linears.2.right"} <= keys
    assert not any("seen" in key for key in keys)


def test_power_vectors_follow_every_weight_change() -> None:
    layer = InvertibleResidual(3, hidden=8).double()
    linear = layer.linears[1]
    assert linear.refresh() is False  # nothing changed since construction
    perturbed(layer, seed=1, scale=0.5)  # in place, under no_grad
    assert linear.refresh() is True and linear.refresh() is False
    top = torch.linalg.svd(linear.weight.detach())
    assert abs(linear.left @ top.U[:, 0]) > 1 - 1e-12  # the top pair, up to a common sign
    assert abs(linear.right @ top.Vh[0]) > 1 - 1e-12
    # Loading a state_dict changes the weights in place: the copy computes the same map.
    copy = InvertibleResidual(3, hidden=8, seed=9).double()
    copy.load_state_dict(layer.state_dict())
    x = randn(8, 3, seed=2)
    torch.testing.assert_close(copy(x), layer(x), rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spectral_bound_holds_after_large_optimizer_steps(dtype: torch.dtype) -> None:
    bound = 0.8
    flow = Flow(
        Compose(*[InvertibleResidual(2, hidden=16, lipschitz=bound, seed=k) for k in range(2)]),
        StandardNormal(2),
    ).to(dtype)
    data = banana(256, seed=0).to(dtype)
    optimizer = torch.optim.Adam(flow.parameters(), lr=0.5)
    at_the_bound = 0
    for _ in range(8):
        optimizer.zero_grad()
        flow.forward_kl(data).backward()
        optimizer.step()
        for layer in flow.bijector:
            for weight in layer.normalized_weights():
                largest = torch.linalg.svdvals(weight.detach().double())[0].item()
                assert largest <= bound * (1 + 1e-6), largest
                at_the_bound += largest >= bound * (1 - 1e-6)
    assert at_the_bound > 0  # the normalization is active, so the bound is really tested
    for layer in flow.bijector:
        x = data[:32]
        torch.testing.assert_close(layer.inverse(layer(x)[0])[0], x, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- estimators


def test_series_error_shrinks_within_the_bound() -> None:
    layer = strong_layer()
    x = 0.3 * randn(8, 2, seed=1)
    exact = layer(x)[1]
    partial_sums = series_partial_sums(layer.exact_traces(x, 15))
    errors = (partial_sums - exact.unsqueeze(1)).abs()
    lipschitz = layer.lipschitz_bound(exact=True)
    assert 0.6 < lipschitz < 0.75
    bounds = torch.tensor([series_truncation_bound(n, lipschitz, 2) for n in range(1, 16)])
    assert (errors <= bounds.to(errors)).all()
    # Every term has the sign of the negative eigenvalues: the error falls at every term.
    assert (errors[:, 1:] < errors[:, :-1]).all()
    assert (errors[:, -1] < 1e-2 * errors[:, 0]).all() and (errors[:, 0] > 0.05).all()


def test_series_partial_sums_and_bound_values() -> None:
    traces = torch.tensor([[2.0, 3.0, 4.0, 5.0]])
    expected = torch.tensor([[2.0, 2.0 - 1.5, 2.0 - 1.5 + 4 / 3, 2.0 - 1.5 + 4 / 3 - 1.25]])
    torch.testing.assert_close(series_partial_sums(traces), expected)
    lipschitz, dim = 0.7, 3
    tail = sum(dim * lipschitz**k / k for k in range(5, 400))
    bound = series_truncation_bound(4, lipschitz, dim)
    assert tail <= bound <= 2 * tail
    assert bound == pytest.approx(dim * lipschitz**5 / (5 * 0.3))
    with pytest.raises(ValueError, match="lipschitz must be in"):
        series_truncation_bound(4, 1.0, 3)


COPIES = 20_000


def repeated_estimates(layer: InvertibleResidual, point: Tensor, seed: int, **kw) -> Tensor:
    """``COPIES`` independent estimates at one point (one probe, one N per sample)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return layer.estimate_log_det(point.expand(COPIES, -1), **kw)


@pytest.mark.parametrize(
    "options",
    [{}, {"hutchinson_noise": "gaussian"}, {"roulette_min_terms": 3, "roulette_p": 0.6}],
    ids=["rademacher", "gaussian", "min_terms=3"],
)
def test_roulette_is_unbiased_where_the_short_series_is_not(options: dict) -> None:
    layer = strong_layer(**options)
    point = 0.3 * randn(1, 2, seed=3)
    exact = layer(point)[1].item()
    roulette = repeated_estimates(layer, point, seed=0, method="roulette")
    error = roulette.std().item() / math.sqrt(COPIES)
    assert abs(roulette.mean().item() - exact) < 4 * error
    series = repeated_estimates(layer, point, seed=1, method="series", n_terms=2)
    series_error = series.std().item() / math.sqrt(COPIES)
    truncated = series_partial_sums(layer.exact_traces(point, 2))[0, 1].item()
    assert abs(series.mean().item() - truncated) < 4 * series_error  # Hutchinson: unbiased
    assert abs(series.mean().item() - exact) > 20 * series_error  # truncation: biased
    assert series.std() > 0 and roulette.std() > 0  # one probe per sample, not one per batch


@pytest.mark.parametrize("method", ["series", "roulette"])
def test_estimators_are_reproducible_under_manual_seed(method: str) -> None:
    layer = perturbed(InvertibleResidual(4, log_det=method), seed=0, scale=0.3)
    x = randn(32, 4, seed=1)
    values = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        values.append(layer(x)[1])
    assert torch.equal(values[0], values[1])
    assert not torch.allclose(values[0], values[2])
    torch.manual_seed(5)
    z, _ = layer(x)
    torch.manual_seed(5)
    _, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(inverse_log_det, -values[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["series", "roulette"])
def test_gradients_flow_through_the_estimators(method: str) -> None:
    layer = perturbed(InvertibleResidual(3, hidden=8, log_det=method, n_terms=4), seed=1)
    x = randn(5, 3, seed=2).requires_grad_(True)
    directions = [randn(*p.shape, seed=10 + i) for i, p in enumerate([x, *layer.parameters()])]

    def estimate(shift: float) -> Tensor:
        """The estimate at parameters and x moved by ``shift`` along the directions."""
        torch.manual_seed(3)  # the same probes and N at every evaluation
        if shift == 0:
            return layer.estimate_log_det(x).sum()
        moved = copy.deepcopy(layer)
        with torch.no_grad():
            for parameter, direction in zip(moved.parameters(), directions[1:], strict=True):
                parameter.add_(shift * direction)
            return moved.estimate_log_det(x + shift * directions[0]).sum()

    inputs = [x, *layer.parameters()]
    gradients = torch.autograd.grad(estimate(0.0), inputs, allow_unused=True)
    # Every input but the output bias shapes J_r (the bias only shifts z).
    assert gradients[-1] is None and inputs[-1] is layer.linears[-1].bias
    gradients = [*gradients[:-1], torch.zeros_like(inputs[-1])]
    assert all(torch.isfinite(g).all() and g.abs().max() > 0 for g in gradients[:-1])
    directional = sum((g * d).sum() for g, d in zip(gradients, directions, strict=True))
    eps = 1e-6
    finite_difference = (estimate(eps) - estimate(-eps)) / (2 * eps)
    torch.testing.assert_close(directional, finite_difference, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert not layer(x)[1].requires_grad


# ----------------------------------------------------------------------------- arguments


def test_bad_arguments() -> None:
    for lipschitz in (1.0, 1.5, 0.0, -0.5):
        with pytest.raises(ValueError, match=r"lipschitz must be a number in \(0, 1\)"):
            InvertibleResidual(2, lipschitz=lipschitz)
    with pytest.raises(ValueError, match="unknown log_det 'taylor'"):
        InvertibleResidual(2, log_det="taylor")
    for n_terms in (0, -3):
        with pytest.raises(ValueError, match="n_terms must be at least 1"):
            InvertibleResidual(2, n_terms=n_terms)
    for p in (0.0, 1.0):
        with pytest.raises(ValueError, match="roulette_p must be a number in"):
            InvertibleResidual(2, roulette_p=p)
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        InvertibleResidual(2, activation="relu")
    with pytest.raises(ValueError, match="unknown hutchinson_noise"):
        InvertibleResidual(2, hutchinson_noise="uniform")
    with pytest.raises(ValueError, match="inverse_tol must be a positive number"):
        InvertibleResidual(2, inverse_tol=-1.0)
    with pytest.raises(ValueError, match="power_tol must be a positive number"):
        InvertibleResidual(2, power_tol=0.0)
    with pytest.raises(ValueError, match="dim must be at least 1"):
        InvertibleResidual(0)
    layer = InvertibleResidual(3)
    with pytest.raises(ValueError, match="unknown log_det 'bogus'"):
        layer.estimate_log_det(torch.zeros(2, 3), method="bogus")
    with pytest.raises(ValueError, match="n_terms must be at least 1"):
        layer.estimate_log_det(torch.zeros(2, 3), method="series", n_terms=0)
    with pytest.raises(ValueError, match=r"InvertibleResidual.forward: x must have shape \(B, 3\)"):
        layer(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"InvertibleResidual.inverse: z must have shape"):
        layer.inverse(torch.zeros(3))
    with pytest.raises(TypeError, match="must have a floating dtype"):
        layer(torch.zeros(4, 3, dtype=torch.long))
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"use torch\.no_grad"):
        layer(torch.zeros(4, 3))


# ----------------------------------------------------------------------------- fitting


def test_short_fit_lowers_held_out_nll() -> None:
    flow = Flow(
        Compose(*[InvertibleResidual(2, hidden=16, seed=k) for k in range(2)]), StandardNormal(2)
    )
    before, after = held_out_nll_before_and_after(
        flow, banana(256, seed=0), banana(1000, seed=1), steps=150, lr=1e-2
    )
    # About 2.71 nats before and 2.2 after (the data entropy is 1.63).
    assert before > 2.5 and after < before - 0.4, (before, after)


# ----------------------------------------------------------------------------- the parts alone


def test_the_block_takes_its_network_from_outside() -> None:
    net = LipschitzMLP(3, hidden=8, layers=1, lipschitz=0.5, seed=4).double()
    layer = InvertibleResidual(3, net=net)
    assert layer.net is net and layer.lipschitz == 0.5
    # each normalized weight is within the power iteration's documented 2.2e-7 of c
    assert layer.lipschitz_bound(exact=True) <= (0.5 * (1 + 2.2e-7)) ** 2
    check_bijector(perturbed(layer, scale=0.05), randn(8, 3, seed=2))
    with pytest.raises(TypeError, match="net must be a LipschitzMLP of dimension 4"):
        InvertibleResidual(4, net=net)


def test_the_estimators_are_functions_of_r_and_its_input() -> None:
    matrix = 0.3 * randn(4, 4, seed=5)  # r(x) = A x: J_r = A everywhere, ‖A‖₂ < 1
    x = randn(6, 4, seed=6).requires_grad_(True)
    r_out = x @ matrix.T
    exact = torch.linalg.slogdet(torch.eye(4, dtype=torch.float64) + matrix).logabsdet
    got = log_det_estimate(x, r_out, method="exact", n_terms=1)
    torch.testing.assert_close(got, exact.expand(6))
    assert torch.equal(residual_jacobian(x, r_out, False), matrix.expand(6, 4, 4))
    weights = power_series_weights("series", 4, x, roulette_p=0.5, roulette_min_terms=1)
    torch.testing.assert_close(weights[0], torch.tensor([1, -1 / 2, 1 / 3, -1 / 4], dtype=x.dtype))
