"""The checker proves itself on a catalogue of correct and broken student bijectors."""

from __future__ import annotations

import copy

import pytest
import torch
from checker_catalogue import CORRECT, MISTAKES, Case, ExpAffine, Float32Only, vectors

from nf_course.checks import (
    CHECKS,
    BijectorCheckError,
    brute_force_log_det,
    check_batch_independence,
    check_bijector,
    check_invertible,
    check_log_det,
    perturb_parameters,
)


def test_catalogue_is_large_enough():
    assert len(CORRECT) >= 10
    assert len(MISTAKES) >= 25
    assert len({case.name for case in CORRECT + MISTAKES}) == len(CORRECT) + len(MISTAKES)


@pytest.mark.parametrize("case", CORRECT, ids=lambda case: case.name)
def test_correct_bijectors_pass(case: Case):
    report = check_bijector(case.make(), case.x(), **case.options)
    assert report.passed
    assert [result.check for result in report.results] == list(CHECKS)


@pytest.mark.parametrize("case", MISTAKES, ids=lambda case: case.name)
def test_mistakes_are_caught_by_the_right_property(case: Case):
    with pytest.raises(BijectorCheckError) as caught:
        check_bijector(case.make(), case.x(), **case.options)
    error = caught.value
    assert set(error.failed_checks) & set(case.catches), (
        f"expected a failure of {case.catches}, got {error.failed_checks}:\n{error}"
    )
    message = str(error)
    for check in set(error.failed_checks) & set(case.catches):
        assert f"[{check}] {CHECKS[check]}" in message
    assert case.says in message, message


def test_float32_only_code_is_checked_in_float32_and_says_why():
    report = check_bijector(Float32Only(), vectors(dim=3))
    assert report.dtype == torch.float32
    assert "in float64" in report.notes[0] and "raised RuntimeError" in report.notes[0]


def test_float64_capable_code_is_checked_in_float64():
    assert check_bijector(ExpAffine(4), vectors().float()).dtype == torch.float64


def test_the_callers_module_is_never_modified():
    from checker_catalogue import ActNorm, images

    module = ActNorm(2)
    before = copy.deepcopy(module.state_dict())
    check_bijector(module, images())
    after = module.state_dict()
    assert not module.initialized
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert all(p.grad is None and p.dtype == torch.float32 for p in module.parameters())


def test_failure_message_names_worst_sample_error_and_tolerance():
    from checker_catalogue import SignFlipped

    with pytest.raises(BijectorCheckError) as caught:
        check_bijector(SignFlipped(4), vectors())
    result = caught.value.report["log_det_forward"]
    assert not result.passed
    assert result.error > result.tolerance
    assert "worst sample" in result.message and "tolerance" in result.message


def test_individual_checks_run_only_their_properties():
    from checker_catalogue import InPlaceForward, SignFlipped

    report = check_invertible(SignFlipped(4), vectors())  # a log-det bug is not its business
    assert "log_det_forward" not in [r.check for r in report.results]
    with pytest.raises(BijectorCheckError) as caught:
        check_log_det(SignFlipped(4), vectors())
    assert caught.value.failed_checks == ["log_det_forward", "log_det_sum"]
    with pytest.raises(BijectorCheckError) as caught:
        check_invertible(InPlaceForward(4), vectors())
    assert "input_unchanged" in caught.value.failed_checks
    assert check_batch_independence(ExpAffine(4), vectors()).passed


def test_given_noise_points_are_checked_too():
    class WrongOutsideImage(ExpAffine):
        """Correct on forward(x), wrong far out in the tails (a clamp in inverse)."""

        def inverse(self, z):
            return super().inverse(z.clamp(-6, 6))

    x = vectors()
    check_bijector(WrongOutsideImage(4), x)
    with pytest.raises(BijectorCheckError) as caught:
        check_bijector(WrongOutsideImage(4), x, z=10 * vectors(seed=3))
    assert "round_trip_inverse" in caught.value.failed_checks


def test_tolerances_can_be_set_and_unknown_ones_are_refused():
    from checker_catalogue import NoiseInForward

    check_bijector(NoiseInForward(4), vectors(), atol=1e-2, log_det_atol=1e-2)
    with pytest.raises(TypeError, match="unknown tolerance"):
        check_bijector(ExpAffine(4), vectors(), tolerance=1e-3)


@pytest.mark.parametrize(
    ("x", "error"),
    [
        (torch.zeros(5, 2, dtype=torch.long), TypeError),
        (torch.zeros(1, 2), ValueError),
        (torch.zeros(4), ValueError),
        ([[0.0, 1.0]], TypeError),
    ],
)
def test_bad_input_to_the_checker_is_refused(x, error):
    with pytest.raises(error):
        check_bijector(ExpAffine(2), x)


def test_brute_force_log_det_matches_closed_forms():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    x = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    log_det = brute_force_log_det(lambda t: t @ matrix.T, x)
    torch.testing.assert_close(log_det, torch.linalg.slogdet(matrix).logabsdet.expand(7))
    log_det = brute_force_log_det(lambda t: (torch.tanh(t), None), x)
    torch.testing.assert_close(log_det, torch.log1p(-(torch.tanh(x) ** 2)).sum(1))


def test_brute_force_log_det_refuses_non_square_and_detached_maps():
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="not square"):
        brute_force_log_det(lambda t: t[:, :2], x)
    with pytest.raises(ValueError, match="differentiabl"):
        brute_force_log_det(lambda t: t.detach() * 2, x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_perturb_parameters_casts_and_moves_every_parameter_reproducibly(dtype: torch.dtype):
    fresh = ExpAffine(3)
    first = perturb_parameters(copy.deepcopy(fresh), seed=4, dtype=dtype)
    again = perturb_parameters(copy.deepcopy(fresh), seed=4, dtype=dtype)
    other = perturb_parameters(copy.deepcopy(fresh), seed=5, dtype=dtype)
    for name, parameter in first.named_parameters():
        original = dict(fresh.named_parameters())[name].to(dtype)
        assert parameter.dtype == dtype
        assert not torch.equal(parameter, original), name
        assert torch.equal(parameter, dict(again.named_parameters())[name])
        assert not torch.equal(parameter, dict(other.named_parameters())[name])


def test_perturb_parameters_refuses_an_integer_dtype():
    with pytest.raises(TypeError, match="floating type"):
        perturb_parameters(ExpAffine(3), dtype=torch.int64)


# ----------------------------------------------------------------------------- the table, the
# copies and the guards


def test_the_table_runs_every_prerequisite_before_its_dependents():
    from nf_course.checks.registry import PROPERTIES

    order = [prop.name for prop in PROPERTIES]
    assert order == list(CHECKS)
    for position, prop in enumerate(PROPERTIES):
        for earlier in (*prop.requires, *prop.after):
            assert earlier in order[:position], (prop.name, earlier)


def test_an_uncopyable_module_is_checked_and_left_as_it_was():
    from checker_catalogue import CachesLastLogDet, called_once

    module = called_once(CachesLastLogDet(4), vectors())
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(module)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    report = check_bijector(module, vectors())
    assert report.passed and report["parameter_update"].skipped is None
    for name, parameter in module.named_parameters():
        assert torch.equal(parameter, before[name]) and parameter.dtype == torch.float32, name


def test_an_active_torch_function_mode_is_refused():
    from torch.overrides import TorchFunctionMode

    class Silent(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Silent(), pytest.raises(BijectorCheckError) as caught:
        check_bijector(ExpAffine(4), vectors())
    assert caught.value.failed_checks == ["runs"]
    assert "function/dispatch mode" in str(caught.value)


def test_a_student_system_exit_is_a_failure_not_an_exit():
    class Exits(ExpAffine):
        def inverse(self, z):
            raise SystemExit(3)

    with pytest.raises(BijectorCheckError, match="raised SystemExit"):
        check_bijector(Exits(4), vectors())


def test_derivatives_of_a_seeded_stochastic_estimator_are_checked_consistently():
    class NoisyButSeeded(ExpAffine):
        """A log-det plus zero-mean noise drawn from the global generator (like Hutchinson)."""

        def forward(self, x):
            z, log_det = super().forward(x)
            noise = torch.randn(x.shape[0], dtype=x.dtype)
            return z, log_det + 0.1 * noise * self.s.sum()

    # Values are compared loosely here; finite differences with steps down to 1e-6 would see
    # the noise a thousand-fold if two evaluations drew different numbers.
    report = check_bijector(NoisyButSeeded(4), vectors(), log_det_atol=1.0)
    assert report["parameter_derivatives"].passed and report["input_derivatives"].passed


# ----------------------------------------------------------------------------- diagnosis alone


def test_diagnosis_names_a_flipped_sign_and_pixel_counts():
    from nf_course.checks.diagnosis import log_det_cause

    expected = torch.tensor([1.0, -2.0, 3.0])
    assert "sign is flipped" in log_det_cause(-expected, expected, (4,), 1e-6)
    assert "H·W = 12 is missing" in log_det_cause(expected / 12, expected, (2, 3, 4), 1e-6)
    assert "W/H" in log_det_cause(expected * 4 / 3, expected, (2, 3, 4), 1e-6)
    assert log_det_cause(expected + torch.tensor([0.1, -0.3, 0.2]), expected, (4,), 1e-6) == ""


def test_diagnosis_of_a_call_failing_on_part_of_the_batch():
    from nf_course.checks.diagnosis import sub_batch_failure_cause

    assert "BatchNorm" in sub_batch_failure_cause("Expected more than 1 value per channel", 1)
    assert ".squeeze()" in sub_batch_failure_cause("shape mismatch", 1)
    assert "x.shape[0]" in sub_batch_failure_cause("shape mismatch", 6)


def test_one_comparison_finds_the_worst_element():
    from nf_course.checks.compare import compare

    want = torch.zeros(3, 2)
    got = want.clone()
    got[2, 1] = 0.5
    got[1, 0] = float("nan")
    result = compare(got, want, atol=1e-3, rtol=0.0)
    assert not result.passed
    assert (result.sample, result.element) == (1, 0) and result.error == float("inf")
    assert (result.failing_samples, result.failing_values) == (2, 2)
    assert compare(torch.tensor([float("inf")]), torch.tensor([float("inf")]), 0, 0).passed


def test_check_close_names_the_input_and_the_values():
    from nf_course.grading_checks import GradingCheckError, check_close

    inputs = torch.tensor([0.5, 1.5, 2.5])
    with pytest.raises(GradingCheckError, match=r"at input 1\.5: got 3, expected 2 \(1 of 3"):
        check_close(
            torch.tensor([1.0, 3.0, 5.0]), torch.tensor([1.0, 2.0, 5.0]), what="f", inputs=inputs
        )
    with pytest.raises(GradingCheckError, match="NaN"):
        check_close(torch.tensor([float("nan")]), torch.tensor([1.0]), what="f")
    with pytest.raises(GradingCheckError, match="shape"):
        check_close(torch.zeros(2), torch.zeros(3), what="f")
    check_close(torch.tensor([-float("inf"), 1.0]), torch.tensor([-float("inf"), 1.0]), what="f")
