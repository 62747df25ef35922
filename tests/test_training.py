"""Tests of nf_course.training: fit by forward and reverse KL, determinism, errors, progress.

The flow under test is a stand-in defined here, an elementwise affine map with a standard
normal base: its distribution is N(shift, exp(log_scale)²), so a fit can be checked against
known answers.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import sys
import time

import pytest
import torch
from torch import Tensor, nn

from nf_course.core import Flow, StandardNormal
from nf_course.training import History, fit, mean_nll, progress_enabled

MEAN = torch.tensor([1.5, -0.5])
STD = torch.tensor([0.5, 2.0])


class Affine(nn.Module):
    """``z = (x - shift) / exp(log_scale)``: the flow is N(shift, exp(log_scale)²) elementwise."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = (x - self.shift) * torch.exp(-self.log_scale)
        return z, (-self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * torch.exp(self.log_scale) + self.shift
        return x, self.log_scale.sum().expand(z.shape[0])


def make_flow() -> Flow:
    return Flow(Affine(2), StandardNormal(2))


def gaussian_data(n: int, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return MEAN + STD * torch.randn(n, 2, generator=generator)


def gaussian_sampler(n: int, *, generator: torch.Generator) -> Tensor:
    return MEAN + STD * torch.randn(n, 2, generator=generator)


def gaussian_log_target(x: Tensor) -> Tensor:
    """log N(x; MEAN, STD²) up to its constant: an unnormalized target."""
    return -0.5 * ((x - MEAN) / STD).square().sum(dim=1)


def learned(flow: Flow) -> tuple[Tensor, Tensor]:
    bijector = flow.bijector
    return bijector.shift.detach(), bijector.log_scale.detach().exp()


def state(flow: Flow) -> dict[str, Tensor]:
    return {name: tensor.clone() for name, tensor in flow.state_dict().items()}


def test_forward_kl_recovers_the_maximum_likelihood_gaussian() -> None:
    # The MLE of a Gaussian is the sample mean and the (biased) sample std of the data. What is
    # left after 400 Adam steps is the jitter of the last steps: Adam moves each parameter by
    # about lr_t per step, and the cosine schedule brings lr_t down to ~1e-5 at the end, so a
    # tolerance of 0.02 (a few percent of STD) leaves ample room and still catches a wrong fit.
    data = gaussian_data(4096)
    flow = make_flow()
    initial_nll = mean_nll(flow, data)
    history = fit(flow, data=data, steps=400, batch_size=256, lr=0.05)
    mean, std = learned(flow)
    torch.testing.assert_close(mean, data.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(std, data.std(0, correction=0), atol=0.02, rtol=0)
    assert mean_nll(flow, data) < initial_nll - 0.5
    assert history.objective == "forward_kl"
    assert history.steps == list(range(1, 401))
    assert history.lrs[0] == 0.05 and history.lrs[-1] < 1e-4  # cosine decay


def test_reverse_kl_recovers_the_target_gaussian() -> None:
    # Against an exact Gaussian target the loss log q - log π̃ becomes the constant -log Z for
    # every sample when q = π, so the reparametrized gradient noise vanishes at the optimum and
    # the fit converges to MEAN and STD themselves; 0.02 is a few percent of STD.
    flow = make_flow()
    history = fit(flow, log_target=gaussian_log_target, steps=400, batch_size=256, lr=0.05)
    mean, std = learned(flow)
    torch.testing.assert_close(mean, MEAN, atol=0.02, rtol=0)
    torch.testing.assert_close(std, STD, atol=0.02, rtol=0)
    log_z = math.log(2 * math.pi) + STD.log().sum().item()  # normalizer of gaussian_log_target
    assert history.objective == "reverse_kl"
    assert history.final_loss == pytest.approx(-log_z, abs=0.01)


def test_infinite_sampler_is_called_with_the_generator() -> None:
    flow = make_flow()
    fit(flow, data=gaussian_sampler, steps=300, batch_size=256, lr=0.05)
    mean, std = learned(flow)
    torch.testing.assert_close(mean, MEAN, atol=0.1, rtol=0)  # fresh data: sampling error
    torch.testing.assert_close(std, STD, atol=0.1, rtol=0)


@pytest.mark.parametrize(
    "source",
    [
        {"data": gaussian_data(512)},
        {"data": gaussian_sampler},
        # Global randomness inside the loss (like a stochastic log-det estimator) is seeded too.
        {"log_target": lambda x: gaussian_log_target(x) + 0.1 * torch.randn(x.shape[0])},
    ],
    ids=["tensor", "sampler", "log_target"],
)
def test_same_seed_gives_bitwise_identical_runs(source: dict[str, object]) -> None:
    def run(seed: int) -> tuple[History, dict[str, Tensor]]:
        flow = make_flow()
        history = fit(
            flow,
            **source,
            steps=30,
            batch_size=64,
            lr=0.01,
            seed=seed,
            validation=gaussian_data(100, seed=2),
            eval_every=10,
        )
        return history, state(flow)

    global_state = torch.get_rng_state()
    (first, first_params), (second, second_params) = run(0), run(0)
    assert torch.equal(torch.get_rng_state(), global_state), "fit changed the global RNG"
    assert first == second  # every field but wall_time, compared with float ==
    assert all(torch.equal(first_params[name], second_params[name]) for name in first_params)
    other, _ = run(1)
    assert other.losses != first.losses


def test_early_stopping_restores_the_best_parameters() -> None:
    # Training data from N(MEAN, STD²), validation data from the initial flow's N(0, I): the
    # validation NLL only grows as the flow learns, so the first validation (step 5) stays best.
    data, validation = (
        gaussian_data(512),
        torch.randn(512, 2, generator=torch.Generator().manual_seed(4)),
    )
    options = {"batch_size": 64, "lr": 0.05, "lr_schedule": "constant", "seed": 3}
    flow = make_flow()
    history = fit(
        flow, data=data, steps=200, validation=validation, eval_every=5, patience=3, **options
    )
    assert history.stopped_early
    assert history.best_step == 5 and history.val_steps == [5, 10, 15, 20]
    assert history.steps[-1] == 20
    assert history.best_val == min(history.val_losses) == history.val_losses[0]
    reference = make_flow()  # the same run stopped at step 5 (same minibatches, constant lr)
    fit(reference, data=data, steps=5, **options)
    assert all(torch.equal(value, state(reference)[name]) for name, value in state(flow).items())
    assert mean_nll(flow, validation) == history.best_val


def test_callback_sees_every_step_and_can_stop_training() -> None:
    seen = []

    def callback(step: int, history: History) -> bool:
        seen.append((step, history.final_loss))
        return step == 7

    history = fit(make_flow(), data=gaussian_data(64), steps=50, batch_size=8, callback=callback)
    assert [step for step, _ in seen] == list(range(1, 8))
    assert history.stopped_early and len(history.losses) == 7
    assert [loss for _, loss in seen] == history.losses


def test_cpu_budget_ends_training_with_the_cosine_schedule_decayed() -> None:
    budget = 0.5
    cpu_start = time.process_time()
    history = fit(
        make_flow(),
        data=gaussian_sampler,
        cpu_seconds=budget,
        batch_size=64,
        lr=0.01,
        validation=gaussian_data(256),
        eval_every=10**9,
    )
    assert time.process_time() - cpu_start >= history.cpu_time >= budget
    assert len(history.steps) > 50 and not history.stopped_early
    assert history.lrs[0] == pytest.approx(0.01, rel=0.01)  # the clock started in fit
    assert all(later <= earlier for earlier, later in itertools.pairwise(history.lrs))
    assert history.lrs[-1] < 1e-4  # the last step started with the budget almost spent
    assert history.val_steps == [history.steps[-1]]  # the last step is validated


def test_steps_cap_a_cpu_budget_and_a_constant_rate_stays_constant() -> None:
    history = fit(
        make_flow(),
        data=gaussian_data(64),
        steps=7,
        cpu_seconds=100.0,
        batch_size=8,
        lr_schedule="constant",
    )
    assert history.steps == list(range(1, 8)) and history.lrs == [1e-3] * 7


def test_non_finite_loss_raises_naming_the_step() -> None:
    calls = 0

    def sampler(n: int, *, generator: torch.Generator) -> Tensor:
        nonlocal calls
        calls += 1
        x = gaussian_sampler(n, generator=generator)
        return x if calls < 3 else x.fill_(math.inf)

    with pytest.raises(FloatingPointError, match=r"step 3\b.*lower the learning rate.*clip"):
        fit(make_flow(), data=sampler, steps=10, batch_size=16)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "exactly one of data= .* and log_target="),
        ({"data": gaussian_data(8), "log_target": gaussian_log_target}, "exactly one"),
        ({"data": gaussian_data(8), "steps": 0}, "steps must be a positive integer"),
        ({"data": gaussian_data(8), "batch_size": 0}, "batch_size must be a positive integer"),
        ({"data": gaussian_data(8), "eval_every": 0}, "eval_every must be a positive integer"),
        ({"data": gaussian_data(8), "lr_schedule": "linear"}, "lr_schedule must be"),
        ({"data": gaussian_data(8), "patience": 2}, "early stopping needs validation="),
        (
            {"data": gaussian_data(8), "patience": 0, "validation": gaussian_data(8)},
            "positive patience",
        ),
        ({"data": torch.zeros(0, 2)}, "data is empty"),
        ({"data": gaussian_data(8), "steps": None}, "give steps= .* or cpu_seconds="),
        ({"data": gaussian_data(8), "cpu_seconds": 0.0}, "cpu_seconds must be positive"),
    ],
)
def test_bad_arguments_raise_value_error(arguments: dict[str, object], message: str) -> None:
    options = {"steps": 10, "batch_size": 4, **arguments}
    with pytest.raises(ValueError, match=message):
        fit(make_flow(), **options)


def test_history_conveniences() -> None:
    history = fit(make_flow(), data=gaussian_data(64), steps=5, batch_size=8)
    assert history.final_loss == history.losses[-1]
    assert math.isnan(History(objective="forward_kl").final_loss)
    as_dict = history.as_dict()
    assert History(**json.loads(json.dumps(as_dict))) == history
    assert as_dict["best_val"] is None and as_dict["val_losses"] == []
    assert history.wall_time > 0


class Terminal(io.StringIO):
    """A stand-in for stderr attached to a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("ci", "tty", "progress", "expected"),
    [
        ("true", True, None, False),  # CI set: off even on a terminal
        (None, True, None, True),
        (None, False, None, False),  # not a terminal: off
        ("true", False, True, True),  # forced on
        (None, True, False, False),  # forced off
    ],
)
def test_progress_enabled(
    monkeypatch: pytest.MonkeyPatch,
    ci: str | None,
    tty: bool,
    progress: bool | None,
    expected: bool,
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(sys, "stderr", Terminal() if tty else io.StringIO())
    assert progress_enabled(progress) is expected


def test_progress_bar_is_quiet_under_ci_and_shows_the_loss_when_forced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    fit(make_flow(), data=gaussian_data(64), steps=5, batch_size=8)
    assert capsys.readouterr().err == ""
    fit(make_flow(), data=gaussian_data(64), steps=5, batch_size=8, progress=True)
    assert "loss=" in capsys.readouterr().err
