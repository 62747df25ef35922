"""Tests of nf_course.dequantization: the conditional flow q(u | x) of variational
dequantization, the ELBO it gives and the module that trains both with ``fit``.

A fresh dequantizer's couplings are the identity, so the density checks run on dequantizers
whose parameters are perturbed by seeded noise. The bound is checked against a flow whose
discrete likelihood is known in closed form: the logit pre-processing over a standard normal
base, whose mass on a bin is a product of differences of normal CDFs.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import perturbed
from torch import Tensor

from nf_course import Compose, Flow, StandardNormal
from nf_course.bijectors import Logit
from nf_course.datasets import digits
from nf_course.dequantization import DequantizedFlow, VariationalDequantizer, dequantized_elbo
from nf_course.pretrained import digits_flow
from nf_course.training import fit, mean_nll

ALPHA = 0.05
TINY = (1, 2, 2)  # a 4-pixel image: Monte Carlo over q converges in a few thousand draws


def images(n: int, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> Tensor:
    """``n`` float64 images of random integer levels 0..16, the extremes included."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(17, (n, *shape), generator=generator).double()
    x[0].fill_(0)
    x[-1].fill_(16)
    return x


def logit_normal_flow(shape: tuple[int, ...]) -> Flow:
    """A float64 flow on ``[0, 17]^shape``: the logit pre-processing over N(0, I)."""
    return Flow(Compose(Logit(bins=17, alpha=ALPHA)), StandardNormal(shape)).double()


def exact_log_mass(x: Tensor) -> Tensor:
    """``log P(x) = log ∫ p(x + u) du`` over the bin of ``x`` for :func:`logit_normal_flow`."""

    def z(y: Tensor) -> Tensor:
        p = ALPHA + (1 - 2 * ALPHA) * y / 17
        return torch.log(p) - torch.log1p(-p)

    mass = torch.special.ndtr(z(x + 1)) - torch.special.ndtr(z(x))
    return mass.log().flatten(1).sum(dim=1)


class RecordingFlow(Flow):
    """A flow that keeps the last input of ``log_prob`` in ``seen``."""

    def log_prob(self, x: Tensor) -> Tensor:
        self.seen = x.detach()
        return super().log_prob(x)


def dequantizer(shape: tuple[int, int, int] = (1, 8, 8), seed: int = 0) -> VariationalDequantizer:
    """A float64 dequantizer with perturbed (generic) parameters; noise of std 0.1 moves
    ``u`` well away from uniform without pressing it against 0 or 1."""
    torch.manual_seed(seed)
    return perturbed(VariationalDequantizer(shape, hidden=8, features=4), seed=seed, scale=0.1)


# ----------------------------------------------------------------------------- samples


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_samples_lie_strictly_inside_the_unit_cube(dtype, scale):
    torch.manual_seed(0)
    model = perturbed(VariationalDequantizer(hidden=8, features=4), scale=scale, dtype=dtype)
    x = images(32).to(dtype)
    u, log_q = model.sample_and_log_prob(x, generator=torch.Generator().manual_seed(1))
    assert u.shape == x.shape and log_q.shape == (32,)
    assert u.dtype == log_q.dtype == dtype
    assert bool((u > 0).all()) and bool((u < 1).all())
    assert bool(torch.isfinite(log_q).all())
    # The ELBO's flow sees x + u inside the bin [x, x + 1), even where x + u rounds up.
    flow = RecordingFlow(Compose(Logit(bins=17, alpha=ALPHA)), StandardNormal((1, 8, 8)))
    dequantized_elbo(flow.to(dtype), model, x, generator=torch.Generator().manual_seed(1))
    assert bool((flow.seen >= x).all()) and bool((flow.seen < x + 1).all())


def test_samples_depend_on_the_image_and_not_on_the_rest_of_the_batch():
    model = dequantizer()
    x = images(4)
    noise = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)).double()
    u, log_q = model.from_noise(noise, x)
    u_other, _ = model.from_noise(noise, x.flip(0))
    assert not torch.allclose(u, u_other)
    u_one, log_q_one = model.from_noise(noise[1:2], x[1:2])
    torch.testing.assert_close(u_one, u[1:2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_q_one, log_q[1:2], rtol=1e-12, atol=1e-12)


def test_a_seeded_generator_gives_the_same_draws():
    model, x = dequantizer(), images(3)
    first = model.sample_and_log_prob(x, generator=torch.Generator().manual_seed(5))
    again = model.sample_and_log_prob(x, generator=torch.Generator().manual_seed(5))
    other = model.sample_and_log_prob(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


# ----------------------------------------------------------------------------- density


def test_log_q_is_the_change_of_variables_of_the_sampling_map():
    model = dequantizer()
    x = images(2)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)).double()
    u, log_q = model.from_noise(noise, x)
    for i in range(2):

        def sample_map(eps: Tensor, i: int = i) -> Tensor:
            return model.from_noise(eps.reshape(1, 1, 8, 8), x[i : i + 1])[0].reshape(64)

        jacobian = torch.autograd.functional.jacobian(sample_map, noise[i].reshape(64))
        log_normal = -0.5 * noise[i].square().sum() - 32 * math.log(2 * math.pi)
        expected = log_normal - torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(log_q[i], expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.log_prob(u, x), log_q, rtol=1e-9, atol=1e-9)


def test_q_integrates_to_one_over_the_bin():
    """Quadrature of ``q(u | x)`` over ``(0, 1)^2`` for a ``1×1×2`` image (one coupling
    conditions each pixel on the other), in logit coordinates ``u = σ(h)``."""
    model = dequantizer((1, 1, 2), seed=1)
    h = torch.linspace(-16, 16, 161, dtype=torch.float64)
    step = (h[1] - h[0]).item()
    grid = torch.cartesian_prod(h, h).reshape(-1, 1, 1, 2)
    for level in (0, 16):
        x = torch.full_like(grid, float(level))
        with torch.no_grad():
            log_q = model.log_prob(torch.sigmoid(grid), x)
        log_slope = torch.nn.functional.logsigmoid(grid) + torch.nn.functional.logsigmoid(-grid)
        mass = torch.exp(log_q + log_slope.flatten(1).sum(dim=1)).sum().item() * step**2
        assert abs(mass - 1) < 1e-6, (level, mass)


# ----------------------------------------------------------------------------- the bound


def test_the_elbo_is_below_the_exact_discrete_log_likelihood():
    flow, model = logit_normal_flow(TINY), dequantizer(TINY, seed=2)
    x = images(5, TINY, seed=3)
    draws = x.repeat(4000, 1, 1, 1)
    with torch.no_grad():
        elbo = dequantized_elbo(flow, model, draws, generator=torch.Generator().manual_seed(5))
    elbo = elbo.reshape(4000, 5)
    log_mass = exact_log_mass(x)
    # The bound holds in expectation, with a margin of many standard errors.
    standard_error = elbo.std(dim=0) / math.sqrt(4000)
    assert bool((elbo.mean(dim=0) + 5 * standard_error < log_mass).all())


def test_training_the_dequantizer_tightens_the_bound():
    flow, model = logit_normal_flow(TINY), dequantizer(TINY, seed=3)
    x = images(8, TINY, seed=4)
    log_mass = exact_log_mass(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(6)

    def gap() -> float:
        with torch.no_grad():
            draws = x.repeat(500, 1, 1, 1)
            elbo = dequantized_elbo(flow, model, draws, generator=torch.Generator().manual_seed(7))
        return (log_mass - elbo.reshape(500, 8).mean(dim=0)).mean().item()

    before = gap()
    for _ in range(150):
        optimizer.zero_grad()
        loss = -dequantized_elbo(flow, model, x.repeat(8, 1, 1, 1), generator=generator).mean()
        loss.backward()
        optimizer.step()
    after = gap()
    assert 0 < after < before / 3


# ----------------------------------------------------------------------------- fit


def test_fit_trains_a_flow_and_its_dequantizer_on_integer_images():
    torch.manual_seed(0)
    train, validation = digits("train")[:200], digits("validation")[:50]
    model = DequantizedFlow(
        digits_flow("realnvp", steps=1, hidden=8),
        VariationalDequantizer(couplings=2, hidden=8, features=4),
        eval_seed=1,
    )
    before = mean_nll(model, validation)
    assert mean_nll(model, validation) == before  # eval mode: the same noise at every call
    history = fit(model, data=train, steps=60, batch_size=32, lr=3e-3, progress=False)
    assert mean_nll(model, validation) < before - 20
    assert all(math.isfinite(loss) for loss in history.losses)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(2, 1, 4, 4, dtype=torch.float64), r"shape"),
        (torch.zeros(2, 64, dtype=torch.float64), r"shape"),
        (torch.full((2, 1, 8, 8), 0.5, dtype=torch.float64), r"integer levels 0\.\.16"),
        (torch.full((2, 1, 8, 8), 17.0, dtype=torch.float64), r"integer levels 0\.\.16"),
        (torch.full((2, 1, 8, 8), -1.0, dtype=torch.float64), r"integer levels 0\.\.16"),
    ],
)
def test_bad_images_are_clear_value_errors(x, message):
    with pytest.raises(ValueError, match=message):
        dequantizer().sample_and_log_prob(x)


def test_a_dtype_mismatch_names_both_dtypes():
    with pytest.raises(TypeError, match=r"float32.*float64"):
        dequantizer().sample_and_log_prob(torch.zeros(2, 1, 8, 8))


def test_noise_and_images_must_pair_up():
    model = dequantizer()
    with pytest.raises(ValueError, match="as many images"):
        model.from_noise(torch.zeros(3, 1, 8, 8, dtype=torch.float64), images(2))
    with pytest.raises(ValueError, match="as many images"):
        model.log_prob(torch.full((3, 1, 8, 8), 0.5, dtype=torch.float64), images(2))
