"""Continuous-time flows (CNF, FFJORD): closed forms, checker, Hutchinson estimator, NFE, a fit."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import banana, perturbed, randn
from torch import Tensor, nn

from nf_course import Flow, StandardNormal
from nf_course.bijectors.continuous import CNF, FFJORD
from nf_course.checks import brute_force_log_det, check_bijector

TIGHT = {"rtol": 1e-9, "atol": 1e-9}


class LinearField(nn.Module):
    """``f(t, z) = A z``: ``z(t1) = expm((t1 - t0) A) x`` with log-det ``(t1 - t0) tr A``."""

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z @ self.matrix.mT


class CountingField(nn.Module):
    """Wraps a field and counts its evaluations."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.calls = 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.calls += 1
        return self.field(t, z)


def small_cnf(dim: int, *, seed: int, scale: float = 0.3, **options: object) -> CNF:
    """A float64 CNF with a small perturbed MLP field (8 units, 2 hidden layers)."""
    torch.manual_seed(seed)
    return perturbed(CNF(dim, hidden=8, **options), seed=seed, scale=scale)


# ----------------------------------------------------------------------------- closed forms


def test_linear_field_matches_the_matrix_exponential() -> None:
    A = randn(3, 3, seed=1)
    t0, t1 = 0.5, 1.7
    cnf = CNF(3, t0=t0, t1=t1, field=LinearField(A), **TIGHT)
    x = randn(5, 3, seed=2)
    z, log_det = cnf(x)
    expected_z = x @ torch.linalg.matrix_exp((t1 - t0) * A).mT
    expected_log_det = (t1 - t0) * torch.trace(A)
    torch.testing.assert_close(z, expected_z, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(log_det, expected_log_det.expand(5), rtol=1e-8, atol=1e-8)
    # The log-det is differentiable in the field's parameters: ∂/∂A of Σ_b (t1 - t0) tr A.
    (gradient,) = torch.autograd.grad(log_det.sum(), cnf.field.matrix)
    torch.testing.assert_close(gradient, 5 * (t1 - t0) * torch.eye(3, dtype=torch.float64))
    x_back, inverse_log_det = cnf.inverse(z)
    torch.testing.assert_close(x_back, x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(inverse_log_det, -log_det, rtol=1e-8, atol=1e-8)
    # The sign convention end to end: log p(x) = log p_Z(z) + log_det for the linear map.
    flow = Flow(cnf, StandardNormal(3).double())
    # x = expm(-(t1 - t0) A) z with z ~ N(0, I): a Gaussian with covariance B Bᵀ.
    B = torch.linalg.matrix_exp(-(t1 - t0) * A)
    covariance = B @ B.mT
    reference = torch.distributions.MultivariateNormal(
        torch.zeros(3, dtype=torch.float64), covariance
    )
    torch.testing.assert_close(flow.log_prob(x), reference.log_prob(x), rtol=1e-7, atol=1e-7)


def test_one_euler_step_is_a_residual_layer() -> None:
    cnf = small_cnf(2, seed=0, scale=0.5, solver="euler", step_size=1.0)
    x = randn(4, 2, seed=3)
    z, log_det = cnf(x)
    t0 = torch.tensor(0.0, dtype=torch.float64)
    torch.testing.assert_close(z, x + cnf.field(t0, x))
    # Euler on the log-det ODE: one step of tr ∂f/∂z at the start.
    jacobian = torch.func.vmap(torch.func.jacrev(lambda v: cnf.field(t0, v[None])[0]))(x)
    torch.testing.assert_close(log_det, torch.diagonal(jacobian, dim1=1, dim2=2).sum(dim=1))
    assert cnf.nfe == 1


def test_fresh_cnf_is_the_identity_and_perturbed_is_not() -> None:
    x = randn(6, 2)
    z, log_det = CNF(2).double()(x)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-12)
    assert torch.equal(log_det, torch.zeros(6, dtype=torch.float64))
    z, log_det = small_cnf(2, seed=1)(x)
    assert (z - x).abs().max() > 0.05 and log_det.abs().max() > 0.05


# ----------------------------------------------------------------------------- exact trace


@pytest.mark.parametrize("batch", [2, 16])
def test_check_bijector_exact_trace(batch: int) -> None:
    # The checker's default float64 tolerances (1e-6 + 1e-5·|value|); the solver runs at
    # rtol = atol = 1e-9, where round trips and log-dets are off by ~1e-8.
    cnf = small_cnf(2, seed=batch, **TIGHT)
    report = check_bijector(cnf, 1.5 * randn(batch, 2, seed=batch))
    assert report.passed and report.dtype == torch.float64


def test_log_det_equals_brute_force_in_3d() -> None:
    cnf = small_cnf(3, seed=7, scale=0.4, t0=-1.0, t1=0.5, **TIGHT)
    x = 1.5 * randn(8, 3, seed=4)
    z, log_det = cnf(x)
    assert log_det.abs().min() > 0.01
    torch.testing.assert_close(log_det, brute_force_log_det(cnf, x), rtol=1e-7, atol=1e-7)
    _, inverse_log_det = cnf.inverse(z)
    torch.testing.assert_close(
        inverse_log_det, brute_force_log_det(cnf.inverse, z), rtol=1e-7, atol=1e-7
    )


def test_adjoint_gradients_match_backprop_through_the_solver() -> None:
    x = randn(6, 2, seed=5)
    gradients = []
    for adjoint in (False, True):
        cnf = small_cnf(2, seed=3, adjoint=adjoint, **TIGHT)
        z, log_det = cnf(x)
        (z.square().sum() - log_det.sum()).backward()
        gradients.append([p.grad for p in cnf.parameters()])
    for direct, adjoint in zip(*gradients, strict=True):
        torch.testing.assert_close(adjoint, direct, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- Hutchinson


def test_noise_is_held_fixed_along_the_solve() -> None:
    # Linear field, Rademacher ε: the estimate (t1 - t0) εᵀAε is (t1 - t0)(tr A ± (A12 + A21)),
    # one of two values. Noise redrawn at each evaluation would average to values in between.
    A = torch.tensor([[0.5, 1.0], [0.6, -0.2]], dtype=torch.float64)
    cnf = CNF(2, trace="hutchinson", noise="rademacher", field=LinearField(A), **TIGHT)
    torch.manual_seed(0)
    _, log_det = cnf(randn(64, 2))
    values = torch.tensor([0.3 - 1.6, 0.3 + 1.6], dtype=torch.float64)
    distance = (log_det.unsqueeze(1) - values).abs().min(dim=1).values
    assert distance.max() < 1e-7
    assert (log_det < 0).any() and (log_det > 0).any()


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased(noise: str) -> None:
    cnf = small_cnf(3, seed=11, scale=0.5, rtol=1e-7, atol=1e-7)
    points = 1.5 * randn(4, 3, seed=6)
    exact = cnf(points)[1].detach()
    cnf.trace, cnf.noise = "hutchinson", noise
    copies = 1000  # each row of the batch draws its own ε
    estimates = []
    for seed in range(2):
        torch.manual_seed(seed)
        with torch.no_grad():
            _, log_det = cnf(points.repeat_interleave(copies, dim=0))
        estimates.append(log_det.reshape(4, copies))
    estimates = torch.cat(estimates, dim=1)
    mean = estimates.mean(dim=1)
    standard_error = estimates.std(dim=1) / math.sqrt(estimates.shape[1])
    assert (standard_error > 1e-3).all()  # a real estimator, not the exact trace
    assert ((mean - exact).abs() < 4 * standard_error).all(), (mean, exact, standard_error)


def test_hutchinson_variance_formulas_and_rademacher_advantage() -> None:
    # Linear field: the estimate is εᵀMε with M = (t1 - t0) A, S = (M + Mᵀ)/2. Gaussian
    # variance 2‖S‖_F², Rademacher 2(‖S‖_F² − Σ S_ii²): much lower when the diagonal dominates.
    A = torch.tensor([[1.5, 0.2, -0.1], [0.0, -1.0, 0.3], [0.2, 0.1, 2.0]], dtype=torch.float64)
    t0, t1 = 0.0, 0.5
    M = (t1 - t0) * A
    S = (M + M.mT) / 2
    frobenius = S.square().sum()
    predicted = {
        "gaussian": 2 * frobenius,
        "rademacher": 2 * (frobenius - torch.diagonal(S).square().sum()),
    }
    variances = {}
    n = 4000
    for noise, formula in predicted.items():
        cnf = CNF(3, t1=t1, trace="hutchinson", noise=noise, field=LinearField(A))
        torch.manual_seed(1)
        with torch.no_grad():
            _, log_det = cnf(randn(n, 3, seed=2))
        centred = log_det - log_det.mean()
        variance = centred.square().mean()
        standard_error = ((centred**4).mean() - variance.square()).sqrt() / math.sqrt(n)
        assert (variance - formula).abs() < 4 * standard_error, (noise, variance, formula)
        assert (log_det.mean() - torch.trace(M)).abs() < 4 * variance.sqrt() / math.sqrt(n)
        variances[noise] = variance
    assert variances["rademacher"] < 0.1 * variances["gaussian"]


def test_manual_seed_reproduces_the_estimate() -> None:
    torch.manual_seed(0)
    model = perturbed(FFJORD(2, hidden=8), seed=0)
    x = randn(8, 2)
    torch.manual_seed(5)
    first = model(x)[1]
    torch.manual_seed(5)
    second = model(x)[1]
    third = model(x)[1]
    assert torch.equal(first, second)
    assert not torch.allclose(first, third)


def test_ffjord_defaults_and_round_trip() -> None:
    model = FFJORD(2)
    assert (model.trace, model.noise) == ("hutchinson", "rademacher")
    assert CNF(2).trace == "exact" and CNF(2).noise == "gaussian"
    torch.manual_seed(2)
    model = perturbed(FFJORD(2, hidden=8, **TIGHT), seed=2, scale=0.5)
    x = 1.5 * randn(16, 2, seed=8)
    torch.manual_seed(0)
    z, log_det = model(x)
    x_back, inverse_log_det = model.inverse(z)
    torch.testing.assert_close(x_back, x, rtol=1e-7, atol=1e-7)
    # The state does not depend on the noise; the two log-det estimates use different ε.
    model.trace = "exact"
    z_exact, _ = model(x)
    torch.testing.assert_close(z, z_exact, rtol=1e-8, atol=1e-8)
    assert not torch.allclose(log_det, -inverse_log_det)


# ----------------------------------------------------------------------------- cost


def test_nfe_counts_field_evaluations_and_grows_with_tighter_tolerances() -> None:
    counts = {}
    for tol in (1e-3, 1e-7):
        cnf = small_cnf(2, seed=4, scale=0.5, rtol=tol, atol=tol)
        field = CountingField(cnf.field)
        cnf.field = field
        x = randn(8, 2, seed=9)
        z, _ = cnf(x)
        assert cnf.nfe == field.calls > 0
        field.calls = 0
        cnf.inverse(z)
        assert cnf.nfe == field.calls > 0
        counts[tol] = cnf.nfe
    assert counts[1e-7] > counts[1e-3]
    euler = small_cnf(2, seed=4, solver="euler", step_size=0.1)
    euler(randn(3, 2))
    assert euler.nfe == 10


# ----------------------------------------------------------------------------- paths and a fit


def test_trajectory_starts_at_x_and_ends_at_forward() -> None:
    cnf = small_cnf(2, seed=5, scale=0.5, t0=0.5, t1=2.0, **TIGHT)
    x = randn(5, 2, seed=10)
    times, states = cnf.trajectory(x, n_times=7)
    torch.testing.assert_close(times, torch.linspace(0.5, 2.0, 7, dtype=torch.float64))
    assert states.shape == (7, 5, 2)
    torch.testing.assert_close(states[0], x)
    torch.testing.assert_close(states[-1], cnf(x)[0], rtol=1e-7, atol=1e-7)


def test_short_ffjord_fit_lowers_held_out_nll() -> None:
    torch.manual_seed(0)
    model = FFJORD(2, hidden=16, rtol=1e-2, atol=1e-2)
    flow = Flow(model, StandardNormal(2))
    train, test = banana(256, seed=0), banana(1024, seed=1)

    def held_out_nll() -> float:
        model.trace = "exact"
        with torch.no_grad():
            nll = flow.forward_kl(test).item()
        model.trace = "hutchinson"
        return nll

    before = held_out_nll()
    optimizer = torch.optim.Adam(flow.parameters(), lr=2e-2)
    for _ in range(25):
        optimizer.zero_grad()
        flow.forward_kl(train).backward()
        optimizer.step()
    after = held_out_nll()
    assert before == pytest.approx(2.70, abs=0.1)  # the identity map on the banana
    assert after < before - 0.3, (before, after)


# ----------------------------------------------------------------------------- errors


def test_bad_arguments_raise() -> None:
    bad_values: list[tuple[dict[str, object], type[Exception]]] = [
        ({"dim": 0}, ValueError),
        ({"dim": 2.0}, TypeError),
        ({"t0": 1.0, "t1": 1.0}, ValueError),
        ({"t1": float("inf")}, ValueError),
        ({"t0": "0"}, TypeError),
        ({"trace": "series"}, ValueError),
        ({"trace": 1}, TypeError),
        ({"noise": "uniform"}, ValueError),
        ({"solver": "rk45"}, ValueError),
        ({"solver": "euler"}, ValueError),
        ({"step_size": 0.1}, ValueError),
        ({"solver": "rk4", "step_size": -0.1}, ValueError),
        ({"rtol": 0.0}, ValueError),
        ({"atol": "1e-5"}, TypeError),
        ({"adjoint": 1}, TypeError),
        ({"hidden": 0}, ValueError),
        ({"layers": 1.5}, TypeError),
        ({"field": lambda t, z: z}, TypeError),
    ]
    for options, error in bad_values:
        options = {"dim": 2, **options}
        with pytest.raises(error):
            CNF(**options)
    cnf = CNF(2)
    with pytest.raises(ValueError, match="trace"):
        cnf.trace = "stochastic"
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        cnf(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating"):
        cnf.inverse(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="n_times"):
        cnf.trajectory(torch.zeros(4, 2), n_times=1)

    class WrongShape(nn.Module):
        def forward(self, t: Tensor, z: Tensor) -> Tensor:
            return z[:, :1]

    with pytest.raises(ValueError, match="same shape"):
        CNF(2, field=WrongShape())(torch.zeros(4, 2))
