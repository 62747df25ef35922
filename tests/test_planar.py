"""Planar and Sylvester flows: checker, log-dets, the invertibility constraint, numeric inverses."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from helpers import perturbed, randn
from torch import Tensor, nn

from nf_course import Compose, Flow, Inverse, StandardNormal
from nf_course.bijectors.planar import (
    Planar,
    Radial,
    Sylvester,
    _solve_increasing,
    default_tolerance,
)
from nf_course.checks import brute_force_log_det, check_bijector

LAYERS: dict[str, Callable[[int], nn.Module]] = {
    "Planar": Planar,
    "Sylvester(m=D)": Sylvester,
    "Sylvester(m<D)": lambda dim: Sylvester(dim, m=max(1, dim - 2), seed=1),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("batch", [2, 16])
def test_check_bijector(name: str, dim: int, batch: int) -> None:
    layer = perturbed(LAYERS[name](dim), seed=dim + batch, scale=0.5)
    x = 2 * randn(batch, dim, seed=1)
    report = check_bijector(layer, x, z=2 * randn(batch, dim, seed=2))
    assert report.passed and report.dtype == torch.float64


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("seed", range(3))
def test_log_det_equals_brute_force(name: str, seed: int) -> None:
    layer = perturbed(LAYERS[name](5), seed=seed, scale=1.0)
    x = 2 * randn(32, 5, seed=seed)
    z, log_det = layer(x)
    torch.testing.assert_close(log_det, brute_force_log_det(layer, x), rtol=1e-10, atol=1e-10)
    _, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(
        inverse_log_det, brute_force_log_det(layer.inverse, z), rtol=1e-8, atol=1e-8
    )


def test_fresh_layers_are_near_identity_but_not_identity() -> None:
    x = randn(64, 5)
    for layer in (Planar(5).double(), Sylvester(5).double(), Sylvester(5, m=2).double()):
        z, log_det = layer(x)
        distance = (z - x).abs().max().item()
        assert 0 < distance < 0.1, f"{type(layer).__name__} moves x by {distance}"
        assert log_det.abs().max() < 0.1


# ----------------------------------------------------------------------------- planar constraint


def adversarial_planar(norm: float, w_u: float, seed: int, dim: int = 3) -> Planar:
    """A float64 ``Planar`` with ``‖w‖ = norm`` and ``wᵀu = w_u``, directions drawn at random."""
    layer = Planar(dim).double()
    w = randn(dim, seed=seed)
    w = norm * w / w.norm()
    u = randn(dim, seed=seed + 1000)
    u = u - (w.dot(u) - w_u) * w / w.dot(w)
    with torch.no_grad():
        layer.w.copy_(w)
        layer.u.copy_(u)
        layer.b.copy_(randn(1, seed=seed + 2000)[0])
    return layer


ADVERSARIAL = [
    (norm, -float(w_u), seed)
    for seed, (norm, w_u) in enumerate(
        (norm, w_u) for norm in (1e-3, 1e-2, 0.3, 10.0, 1e3) for w_u in (2, 4, 8, 15)
    )
]


@pytest.mark.parametrize(("norm", "w_u", "seed"), ADVERSARIAL)
def test_planar_constraint_under_adversarial_parameters(norm: float, w_u: float, seed: int) -> None:
    layer = adversarial_planar(norm, w_u, seed)
    w, b, u_hat = layer.w, layer.b, layer.u_hat()
    with torch.no_grad():
        assert torch.isclose(layer.w.dot(layer.u), torch.tensor(w_u, dtype=torch.float64))
        assert w.dot(u_hat) >= -1 and layer.w_u_hat() > -1
        # A grid of the pre-activation a = wᵀx + b, with random parts orthogonal to w.
        a = torch.linspace(-6, 6, 241, dtype=torch.float64)
        noise = randn(a.numel(), 3, seed=seed)
        x = noise - (noise @ w).unsqueeze(1) * w / w.dot(w) + (a - b).unsqueeze(1) * w / w.dot(w)
        torch.testing.assert_close(x @ w + b, a)
        psi = (1 - torch.tanh(x @ w + b).square()).unsqueeze(1) * w
        det = 1 + psi @ u_hat
        assert (det > 0).all()
        z, log_det = layer(x)
        assert torch.isfinite(log_det).all()
        x_rec, _ = layer.inverse(z)
        # The backward error is at the tolerance; the forward error may exceed it by the
        # condition number of the inverse along w, 1/det (up to 3e6 here, at a = 0).
        z_scale = 1 + z.norm(dim=1, keepdim=True)
        assert ((layer(x_rec)[0] - z).abs() <= 1e-12 * z_scale).all()
        x_scale = (1 + x.norm(dim=1, keepdim=True)) / det.unsqueeze(1)
        assert ((x_rec - x).abs() <= 1e-12 * x_scale).all()


def test_dividing_by_the_norm_instead_of_its_square_breaks_the_constraint() -> None:
    # The variant û = u + (m(wᵀu) - wᵀu) w/‖w‖ gives wᵀû = wᵀu + (m(wᵀu) - wᵀu)‖w‖.
    violations = 0
    for norm, w_u, seed in ADVERSARIAL:
        layer = adversarial_planar(norm, w_u, seed)
        with torch.no_grad():
            w, u = layer.w, layer.u
            m = F.softplus(w.dot(u)) - 1
            u_hat_norm_variant = u + (m - w.dot(u)) * w / w.norm()
            violations += int(w.dot(u_hat_norm_variant) < -1)
            assert w.dot(layer.u_hat()) >= -1
    assert violations > 0
    layer = adversarial_planar(1e-3, -4.0, 0)
    w, u = layer.w.detach(), layer.u.detach()
    u_hat_norm_variant = u + (F.softplus(w.dot(u)) - 1 - w.dot(u)) * w / w.norm()
    assert w.dot(u_hat_norm_variant) < -3.9


# ----------------------------------------------------------------------------- Sylvester


@pytest.mark.parametrize("m", [None, 3, 1])
@pytest.mark.parametrize("seed", range(4))
def test_sylvester_structure_after_perturbation(m: int | None, seed: int) -> None:
    layer = perturbed(Sylvester(5, m=m), seed=seed, scale=2.0)
    Q, R, R_tilde = layer.factors()
    hidden = 5 if m is None else m
    assert Q.shape == (5, hidden) and R.shape == R_tilde.shape == (hidden, hidden)
    eye = torch.eye(hidden, dtype=torch.float64)
    assert (Q.mT @ Q - eye).abs().max() < 1e-12
    assert torch.equal(R, torch.triu(R)) and torch.equal(R_tilde, torch.triu(R_tilde))
    assert (torch.diagonal(R) * torch.diagonal(R_tilde) > -1).all()
    x = 2 * randn(16, 5, seed=seed)
    torch.testing.assert_close(layer(x)[1], brute_force_log_det(layer, x), rtol=1e-10, atol=1e-10)


def test_sylvester_leaves_the_orthogonal_complement_unchanged() -> None:
    layer = perturbed(Sylvester(5, m=2), scale=1.0)
    Q, _, _ = layer.factors()
    x = randn(16, 5)
    z, _ = layer(x)
    complement = torch.eye(5, dtype=torch.float64) - Q @ Q.mT
    torch.testing.assert_close(z @ complement, x @ complement, rtol=0, atol=1e-13)


def test_sylvester_rejects_bad_m() -> None:
    with pytest.raises(ValueError, match="m must be at most dim"):
        Sylvester(3, m=4)
    with pytest.raises(ValueError, match="m must be at least 1"):
        Sylvester(3, m=0)


# ----------------------------------------------------------------------------- numeric inverses


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_meets_the_documented_tolerance(name: str) -> None:
    layer = perturbed(LAYERS[name](5), seed=7, scale=1.0)
    z = 3 * randn(512, 5, seed=3)
    x, _ = layer.inverse(z)
    z_rec, _ = layer(x)
    tol = default_tolerance(torch.float64)
    assert tol == 1e-12
    assert ((z_rec - z).abs() <= tol * (1 + z.abs())).all()


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_in_float32(name: str) -> None:
    layer = perturbed(LAYERS[name](5), seed=7, scale=0.5).float()
    x = 2 * randn(64, 5, seed=4).float()
    z, _ = layer(x)
    x_rec, _ = layer.inverse(z)
    torch.testing.assert_close(x_rec, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [Planar, Sylvester])
def test_iteration_cap_raises_a_clear_error(make: Callable[..., nn.Module]) -> None:
    layer = perturbed(make(4, max_iter=1), scale=1.0)
    with pytest.raises(RuntimeError, match=r"inverse: the numeric inverse did not converge"):
        layer.inverse(3 * randn(8, 4))
    layer.max_iter = 100
    layer.inverse(3 * randn(8, 4))


@pytest.mark.parametrize("make", [Planar, Sylvester])
def test_bad_options_and_shapes(make: Callable[..., nn.Module]) -> None:
    with pytest.raises(ValueError, match="tol must be a positive number"):
        make(3, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter must be at least 1"):
        make(3, max_iter=0)
    with pytest.raises(ValueError, match="dim must be at least 1"):
        make(0)
    layer = make(3)
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name}.forward: x must have shape \(B, 3\)"):
        layer(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=rf"{name}.inverse: z must have shape \(B, 3\)"):
        layer.inverse(torch.zeros(3))
    with pytest.raises(TypeError, match=rf"{name}.forward: x must have a floating dtype"):
        layer(torch.zeros(4, 3, dtype=torch.long))


# ----------------------------------------------------------------------------- reverse KL

SIGMA_1, SIGMA_2, BEND = 1.5, 0.5, 0.4


def log_banana(x: Tensor) -> Tensor:
    """Unnormalized banana: ``x₁ ~ N(0, σ₁²)``, ``x₂ | x₁ ~ N(BEND·(x₁² - σ₁²), σ₂²)``."""
    bent = x[:, 1] - BEND * (x[:, 0].square() - SIGMA_1**2)
    return -0.5 * (x[:, 0] / SIGMA_1).square() - 0.5 * (bent / SIGMA_2).square()


# (x₁, x₂) ↦ (x₁, x₂ - BEND(x₁² - σ₁²)) has unit Jacobian, so Z = 2π σ₁ σ₂.
LOG_Z_BANANA = math.log(2 * math.pi * SIGMA_1 * SIGMA_2)


def test_inverse_planar_samples_without_root_finding() -> None:
    # max_iter=1 makes every root finding fail, so this shows the sampling side is closed-form.
    flow = Flow(
        Compose(*[Inverse(Planar(2, seed=k, max_iter=1)) for k in range(3)]), StandardNormal(2)
    )
    x, log_q = flow.sample_and_log_prob(64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 2) and torch.isfinite(log_q).all()
    with pytest.raises(RuntimeError, match="did not converge"):
        flow.log_prob(x.detach())


def test_reverse_kl_fit_of_a_banana() -> None:
    flow = Flow(Compose(*[Inverse(Planar(2, seed=k)) for k in range(8)]), StandardNormal(2))
    flow.double()

    def kl_estimate() -> float:
        with torch.no_grad():
            loss = flow.reverse_kl(log_banana, 4096, generator=torch.Generator().manual_seed(1))
        return loss.item() + LOG_Z_BANANA

    before = kl_estimate()
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(2)
    for _ in range(300):
        optimizer.zero_grad()
        loss = flow.reverse_kl(log_banana, 256, generator=generator)
        loss.backward()
        optimizer.step()
    after = kl_estimate()
    # About 2.0 nats before and 0.15 after (the exact KL: log Z of the banana is known).
    assert before > 1.5 and after < 0.3, (before, after)


def test_log_det_stays_finite_when_the_constraint_saturates() -> None:
    """wᵀu = -50: m(wᵀu) rounds to -1 in float64, yet on the hyperplane wᵀx + b = 0 the true
    log-det is log softplus(-50) ≈ -50, not -inf; the inverse still round-trips there."""
    layer = Planar(2).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([0.6, -0.8], dtype=torch.float64))
        layer.u.copy_(-50 * layer.w)  # ‖w‖ = 1, so wᵀu = -50
        layer.b.fill_(0.3)
    assert layer.w_u_hat().item() == -1.0  # the saturated constraint
    on_plane = torch.tensor([[-0.5, 0.0], [0.0, 0.375]], dtype=torch.float64)  # wᵀx = -0.3
    _, log_det = layer(on_plane)
    expected = F.softplus(torch.tensor(-50.0, dtype=torch.float64))
    torch.testing.assert_close(log_det, expected.log().expand(2), rtol=0, atol=1e-9)
    away = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    away = away[(away @ layer.w + layer.b).abs() > 0.5]
    torch.testing.assert_close(layer(away)[1], brute_force_log_det(layer, away), rtol=0, atol=1e-9)
    x_back, _ = layer.inverse(layer(away)[0])
    torch.testing.assert_close(x_back, away, rtol=0, atol=1e-8)


def test_sylvester_log_det_stays_finite_when_the_constraint_saturates() -> None:
    layer = Sylvester(3, m=2).double()
    with torch.no_grad():
        layer.a.fill_(-50.0)  # R_ii R̃_ii = m(-50), -1 in float64
        layer.b.zero_()
    assert (layer.diagonal_product() == -1).all()
    x = torch.zeros(1, 3, dtype=torch.float64)  # pre-activations b = 0: h' = 1 in both units
    _, log_det = layer(x)
    expected = 2 * F.softplus(torch.tensor(-50.0, dtype=torch.float64)).log()
    torch.testing.assert_close(log_det, expected.reshape(1), rtol=0, atol=1e-9)


def test_root_finder_does_not_cycle_where_plain_safeguarded_newton_did() -> None:
    """A steep layer of a trained planar flow (c = wᵀû = 11.35) in float32: Newton steps stayed
    inside the bracket but cycled for 100 iterations (bracket 5.39 wide) until the solver
    also required the residual to fall fast enough, and bisected otherwise."""
    c, k, beta = torch.tensor(11.3452), torch.tensor(1.0), torch.tensor(-0.0473)
    gamma = torch.tensor([-9.919750213623047])
    tol = default_tolerance(torch.float32)
    t = _solve_increasing(c, k, beta, gamma, tol=tol, max_iter=100, where="test")
    residual = t + c * torch.tanh(k * t + beta) - gamma
    assert residual.abs().item() < 1e-4
    assert abs(t.item() + 1.0115) < 1e-3


# ----------------------------------------------------------------------------- radial


@pytest.mark.parametrize("dim", [1, 2, 5])
@pytest.mark.parametrize("seed", range(3))
def test_radial_passes_the_checker(dim: int, seed: int) -> None:
    layer = perturbed(Radial(dim, seed=seed), seed=seed + 10, scale=1.0)
    x = 2 * randn(16, dim, seed=seed)
    report = check_bijector(layer, x, z=2 * randn(16, dim, seed=seed + 1))
    assert report.passed and report.dtype == torch.float64


def test_radial_log_det_and_inverse_against_brute_force() -> None:
    layer = perturbed(Radial(4, seed=1), seed=2, scale=1.0)
    x = torch.cat([3 * randn(31, 4, seed=3), layer.x0.detach()[None]])  # the centre included
    z, log_det = layer(x)
    torch.testing.assert_close(log_det, brute_force_log_det(layer, x), rtol=1e-10, atol=1e-10)
    x_back, inverse_log_det = layer.inverse(z)
    torch.testing.assert_close(x_back, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=1e-12, atol=1e-12)


def test_radial_stays_invertible_at_the_boundary_beta_close_to_minus_alpha() -> None:
    layer = Radial(3).double()
    with torch.no_grad():
        layer.log_alpha.fill_(math.log(2.0))
        layer.beta_raw.fill_(-30.0)  # softplus(-30) ≈ 1e-13: β = -α + 1e-13
    alpha, beta = layer.alpha_beta()
    assert beta > -alpha and (beta + alpha).item() < 1e-12
    # Points at radius 0 to 5 around the centre, along random directions.
    directions = F.normalize(randn(64, 3, seed=4), dim=1)
    x = layer.x0.detach() + directions * torch.linspace(0, 5, 64, dtype=torch.float64)[:, None]
    z, log_det = layer(x)
    assert torch.isfinite(log_det).all()
    # Along one ray the radius must keep its order: the map is increasing in r.
    radii_after = (z - layer.x0).norm(dim=1)
    assert (radii_after.diff() * torch.linspace(0, 5, 64).diff().double() >= 0).all()
    x_back, _ = layer.inverse(z)
    torch.testing.assert_close(x_back[1:], x[1:], rtol=1e-8, atol=1e-8)


def test_radial_parametrization_keeps_beta_above_minus_alpha() -> None:
    for seed in range(20):
        layer = perturbed(Radial(2, seed=seed), seed=seed, scale=5.0)
        alpha, beta = layer.alpha_beta()
        assert alpha > 0 and beta > -alpha


def test_radial_fresh_layer_is_near_identity_and_rejects_bad_input() -> None:
    layer = Radial(3).double()
    x = randn(32, 3)
    z, log_det = layer(x)
    assert 0 < (z - x).abs().max() < 0.05 and log_det.abs().max() < 0.05
    with pytest.raises(ValueError, match="dim must be at least 1"):
        Radial(0)
    with pytest.raises(ValueError, match=r"Radial.forward: x must have shape \(B, 3\)"):
        layer(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"Radial.inverse: z must have shape \(B, 3\)"):
        layer.inverse(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"Radial.forward: x must have a floating dtype"):
        layer(torch.zeros(4, 3, dtype=torch.long))
