"""Tests of ``nf_course.targets``: the U1-U4 energies, their normalizers and the reverse KL."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import integrate, special

import nf_course
from nf_course.targets import (
    BOX,
    DEFAULT_TAU,
    ENERGY_TARGETS,
    EnergyTarget,
    KLEstimate,
    box_envelope,
    energy_u1,
    energy_u2,
    energy_u3,
    energy_u4,
    get_energy_target,
    log_partition,
    reverse_kl_estimate,
)

NAMES = ["U1", "U2", "U3", "U4"]
ENERGY_FUNCTIONS = [energy_u1, energy_u2, energy_u3, energy_u4]

# log Z on the box [-4, 4]², as stated (rounded to 3 decimals) in DESIGN.md, "Quality targets".
DESIGN_LOG_Z_BOX = {"U1": 1.878, "U2": 2.082, "U3": 2.642, "U4": 2.685}


def reference_energy(name: str, z1: float, z2: float) -> float:
    """The formulas of Rezende and Mohamed (2015), Table 1, written out with scalar math."""
    w1 = math.sin(2 * math.pi * z1 / 4)
    w2 = 3 * math.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + math.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        a = -0.5 * ((z1 - 2) / 0.6) ** 2
        b = -0.5 * ((z1 + 2) / 0.6) ** 2
        top = max(a, b)
        log_sum = top + math.log(math.exp(a - top) + math.exp(b - top))
        return 0.5 * ((math.hypot(z1, z2) - 2) / 0.4) ** 2 - log_sum
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        a, b = -0.5 * ((z2 - w1) / 0.35) ** 2, -0.5 * ((z2 - w1 + w2) / 0.35) ** 2
    else:
        a, b = -0.5 * ((z2 - w1) / 0.4) ** 2, -0.5 * ((z2 - w1 + w3) / 0.35) ** 2
    top = max(a, b)
    return -(top + math.log(math.exp(a - top) + math.exp(b - top)))


POINTS = [(0.0, 0.0), (2.0, 0.0), (1.0, -1.0), (-3.5, 2.2), (0.3, 3.9), (10.0, -10.0)]


@pytest.mark.parametrize("name", NAMES)
def test_energies_match_the_formulas(name: str) -> None:
    target = get_energy_target(name)
    z = torch.tensor(POINTS, dtype=torch.float64)
    expected = [reference_energy(name, *point) for point in POINTS]
    np.testing.assert_allclose(target.energy(z).numpy(), expected, rtol=1e-12, atol=1e-12)
    single = target.energy(z.float())
    assert single.dtype == torch.float32
    np.testing.assert_allclose(single.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_energies_at_hand_computed_points() -> None:
    # U1(0, 0): the ring term (2/0.4)²/2 = 12.5 and two equal modes exp(-(2/0.6)²/2) = e^{-50/9}.
    origin, on_ring, off_ridge = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, -1.0]]).double()
    assert energy_u1(origin[None]).item() == pytest.approx(12.5 - math.log(2) + 50 / 9, abs=1e-12)
    # U1(2, 0): on the ring, at one mode; the other mode adds exp(-(4/0.6)²/2) = e^{-200/9}.
    assert energy_u1(on_ring[None]).item() == pytest.approx(-math.log1p(math.exp(-200 / 9)))
    # U2: zero on the ridge z2 = sin(π z1 / 2); at (1, -1) the ridge is at 1, two units away.
    assert energy_u2(origin[None]).item() == 0.0
    assert energy_u2(off_ridge[None]).item() == pytest.approx(12.5, abs=1e-12)
    # U3(1, -1): offset z2 - w1 = -2 and w2(1) = 3, so the second branch sits at offset 1.
    u3 = -math.log(math.exp(-0.5 * (2 / 0.35) ** 2) + math.exp(-0.5 * (1 / 0.35) ** 2))
    assert energy_u3(off_ridge[None]).item() == pytest.approx(u3, abs=1e-12)
    # U4(1, -1): w3(1) = 3 σ(0) = 1.5, so the second branch sits at offset -0.5.
    u4 = -math.log(math.exp(-0.5 * (2 / 0.4) ** 2) + math.exp(-0.5 * (0.5 / 0.35) ** 2))
    assert energy_u4(off_ridge[None]).item() == pytest.approx(u4, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_log_z_on_the_box_matches_design_and_the_grid_error_is_small(name: str) -> None:
    target = get_energy_target(name)
    assert target.resolution == 512
    assert abs(target.log_Z_box - DESIGN_LOG_Z_BOX[name]) <= 0.0005
    # Simpson's error is O(h⁴): halving h divides it by 16, so the 512-interval value's error
    # is about |S_512 - S_256| / 15. Even the whole difference is far below 1e-4 nats.
    coarse = log_partition(target.energy, BOX, resolution=256)
    assert abs(target.log_Z_box - coarse) < 1e-6


def test_log_z_of_u2_on_the_box_by_an_independent_one_dimensional_integral() -> None:
    # For each z1 the z2-integral of U2's Gaussian ridge is a difference of normal CDFs.
    def column(z1: float) -> float:
        ridge = math.sin(math.pi * z1 / 2)
        mass = special.ndtr((4 - ridge) / 0.4) - special.ndtr((-4 - ridge) / 0.4)
        return 0.4 * math.sqrt(2 * math.pi) * mass

    value, _ = integrate.quad(column, -4, 4, epsabs=1e-12, epsrel=1e-12)
    assert get_energy_target("U2").log_Z_box == pytest.approx(math.log(value), abs=1e-9)


def test_log_partition_of_simple_energies() -> None:
    def quadratic(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * z.square().sum(dim=1)

    def flat(z: torch.Tensor) -> torch.Tensor:
        return z.new_zeros(z.shape[0])

    gaussian = log_partition(quadratic, ((-12.0, 12.0), (-12.0, 12.0)), resolution=256)
    assert gaussian == pytest.approx(math.log(2 * math.pi), abs=1e-9)
    assert log_partition(flat, ((0.0, 2.0), (-1.0, 2.0)), resolution=2) == pytest.approx(
        math.log(6.0), abs=1e-12
    )


def boundary_mass(target: EnergyTarget) -> float:
    """``∮ exp(-U) dl`` along the edges of the box, by the trapezoid rule."""
    t = torch.linspace(-4, 4, 8001, dtype=torch.float64)
    weights = torch.full_like(t, 8 / 8000)
    weights[[0, -1]] /= 2
    edge = torch.full_like(t, 4.0)
    total = 0.0
    for z in (torch.stack(pair, dim=1) for pair in [(edge, t), (-edge, t), (t, edge), (t, -edge)]):
        total += (weights * torch.exp(-target.energy(z))).sum().item()
    return total


@pytest.mark.parametrize("name", NAMES)
def test_envelope_adds_little_mass(name: str) -> None:
    target = get_energy_target(name)
    assert target.tau == DEFAULT_TAU == 0.01
    gap = target.log_Z - target.log_Z_box
    # The envelope's extra mass changes log Z by less than 0.005 nats (0.0042 on U4).
    assert 0 < gap < 0.005
    # To first order in τ the extra mass is a half-Gaussian of width τ along the edges.
    first_order = math.log1p(
        target.tau * math.sqrt(math.pi / 2) * boundary_mass(target) / math.exp(target.log_Z_box)
    )
    assert gap == pytest.approx(first_order, rel=0.02, abs=1e-8)
    # Grid error of the piecewise Simpson rule, as for the box.
    coarse = EnergyTarget(name, target.energy_fn, resolution=256).log_Z
    assert abs(target.log_Z - coarse) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_normalized_density_integrates_to_one_on_an_extended_grid(name: str) -> None:
    # An independent rule: the trapezoid rule on one uniform grid with spacing τ that covers
    # the box and 12 τ of the envelope's tails on each side.
    target = get_energy_target(name)
    margin, step = 12 * target.tau, target.tau
    intervals = round((8 + 2 * margin) / step)
    nodes = torch.linspace(-4 - margin, 4 + margin, intervals + 1, dtype=torch.float64)
    weights = torch.full_like(nodes, step)
    weights[[0, -1]] /= 2
    grid1, grid2 = torch.meshgrid(nodes, nodes, indexing="ij")
    density = torch.exp(target.log_prob(torch.stack([grid1.flatten(), grid2.flatten()], dim=1)))
    total = (weights[:, None] * weights[None, :] * density.reshape(grid1.shape)).sum().item()
    assert total == pytest.approx(1.0, abs=1e-6)


def test_log_prob_box_is_minus_infinity_outside() -> None:
    target = get_energy_target("U3")
    z = torch.tensor([[0.5, -1.0], [4.0, 4.0], [4.01, 0.0], [0.0, -4.5]], dtype=torch.float64)
    log_prob = target.log_prob_box(z)
    np.testing.assert_allclose(log_prob[:2], -target.energy(z[:2]) - target.log_Z_box, rtol=1e-14)
    assert torch.isneginf(log_prob[2:]).all()


def test_envelope_is_zero_inside_and_quadratic_outside() -> None:
    z = torch.tensor(
        [[3.9, -4.0], [4.5, 0.0], [-5.0, 6.0]], dtype=torch.float64, requires_grad=True
    )
    envelope = box_envelope(z)
    expected = np.array([0.0, 0.5**2, 1.0**2 + 2.0**2]) / (2 * 0.01**2)
    np.testing.assert_allclose(envelope.detach().numpy(), expected, rtol=1e-12)
    envelope.sum().backward()
    expected_grad = np.array([[0.0, 0.0], [0.5, 0.0], [-1.0, 2.0]]) / 0.01**2
    np.testing.assert_allclose(z.grad.numpy(), expected_grad, rtol=1e-12)


FAR_POINTS = [
    (0.0, 0.0),
    (4.0, 0.0),
    (-4.0, 4.0),
    (4.2, -1.0),
    (10.0, 10.0),
    (-10.0, 10.0),
    (10.0, -10.0),
    (-10.0, -10.0),
    (100.0, -100.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_everywhere(name: str, dtype: torch.dtype) -> None:
    target = get_energy_target(name)
    z = torch.tensor(FAR_POINTS, dtype=dtype, requires_grad=True)
    for log_prob in (target.log_prob_unnormalized(z), target.log_prob(z)):
        assert log_prob.dtype == dtype and log_prob.shape == (len(FAR_POINTS),)
        assert torch.isfinite(log_prob).all()
        (grad,) = torch.autograd.grad(log_prob.sum(), z)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    z = (6 * torch.rand(16, 2, generator=generator, dtype=torch.float64) - 3).mul(1.6)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(get_energy_target(name).log_prob_unnormalized, (z,))


@pytest.mark.parametrize("function", [*ENERGY_FUNCTIONS, box_envelope])
def test_clear_errors_on_bad_inputs(function: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with pytest.raises(TypeError, match="floating dtype"):
        function(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        function([[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        function(torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        function(torch.zeros(4, 3))


def test_registry_and_lookup() -> None:
    assert list(ENERGY_TARGETS) == NAMES
    assert get_energy_target("u3") is ENERGY_TARGETS["U3"]
    with pytest.raises(ValueError, match=r"unknown target 'U5'.*U1, U2, U3, U4"):
        get_energy_target("U5")
    with pytest.raises(ValueError, match="tau must be positive"):
        EnergyTarget("U1", energy_u1, tau=0.0)
    with pytest.raises(ValueError, match="low < high"):
        EnergyTarget("U1", energy_u1, bounds=((4.0, -4.0), (-4.0, 4.0)))
    with pytest.raises(ValueError, match="even int"):
        log_partition(energy_u1, BOX, resolution=5)
    with pytest.raises(ValueError, match="even int"):
        EnergyTarget("U1", energy_u1, resolution=100.0)
    with pytest.raises(ValueError, match=r"map \(M, 2\) to \(M,\)"):
        log_partition(lambda z: z, BOX, resolution=2)


class Scale(nf_course.Bijector):
    """``z = x / s``: with a standard normal base, the flow's density is ``q = N(0, s² I)``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x / self.scale, x.new_full((x.shape[0],), -2 * math.log(self.scale))

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z * self.scale, z.new_full((z.shape[0],), 2 * math.log(self.scale))


def exact_reverse_kl_of_a_normal(
    target: EnergyTarget, scale: float, resolution: int = 200
) -> float:
    """``∫ q (log q - log π)`` for ``q = N(0, s² I)``, by Simpson on 3 × 3 pieces of ``[-9, 9]²``.

    The pieces meet at the box's edges, where the envelope's second derivative jumps.
    """
    segments = [np.linspace(low, high, resolution + 1) for low, high in [(-9, -4), (-4, 4), (4, 9)]]
    pieces = [(z1, z2) for z1 in segments for z2 in segments]
    grids = [np.meshgrid(z1, z2, indexing="ij") for z1, z2 in pieces]
    points = np.concatenate(
        [np.stack([grid1.ravel(), grid2.ravel()], axis=1) for grid1, grid2 in grids]
    )
    log_pi = target.log_prob(torch.from_numpy(points)).numpy()
    log_q = -0.5 * (points**2).sum(axis=1) / scale**2 - math.log(2 * math.pi * scale**2)
    integrand = (np.exp(log_q) * (log_q - log_pi)).reshape(len(pieces), resolution + 1, -1)
    return sum(
        integrate.simpson(integrate.simpson(values, x=z2, axis=1), x=z1)
        for values, (z1, z2) in zip(integrand, pieces, strict=True)
    )


@pytest.mark.parametrize("scale", [1.0, 0.7])
@pytest.mark.parametrize("name", NAMES)
def test_reverse_kl_of_a_normal_flow_matches_quadrature(name: str, scale: float) -> None:
    # q = N(0, I) puts 2e-4 of its mass on the envelope's wall, whose heavy-tailed penalty makes
    # the standard error large (0.06 nats); q = N(0, 0.49 I) stays in the box (0.01 nats).
    target = get_energy_target(name)
    flow = nf_course.Flow(nf_course.Compose(Scale(scale)), nf_course.StandardNormal(2))
    estimate = reverse_kl_estimate(
        flow, target, 100_000, generator=torch.Generator().manual_seed(1)
    )
    assert isinstance(estimate, KLEstimate) and estimate.stderr > 0
    exact = exact_reverse_kl_of_a_normal(target, scale)
    assert exact > 0
    assert estimate.value > -3 * estimate.stderr
    assert abs(estimate.value - exact) < 4 * estimate.stderr


def test_reverse_kl_estimate_is_flow_reverse_kl_plus_log_z() -> None:
    target = get_energy_target("U4")
    flow = nf_course.Flow(nf_course.Compose(), nf_course.StandardNormal(2))
    loss = flow.reverse_kl(
        target.log_prob_unnormalized, 1000, generator=torch.Generator().manual_seed(2)
    )
    value, _ = reverse_kl_estimate(flow, target, 1000, generator=torch.Generator().manual_seed(2))
    assert loss.item() + target.log_Z == pytest.approx(value, abs=1e-4)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        reverse_kl_estimate(flow, target, 1)
