"""The cost measurements the book and the benchmarks use."""

from __future__ import annotations

import time

import pytest
import torch

from nf_course.profiling import counting_backward_passes, median_seconds


def test_median_seconds_measures_the_call_and_runs_the_warmup_first():
    calls = []

    def sleeper():
        calls.append(1)
        time.sleep(0.01)

    seconds = median_seconds(sleeper, repeats=3, warmup=2)
    assert len(calls) == 5
    assert 0.009 < seconds < 0.5
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        median_seconds(sleeper, repeats=0)


def test_backward_passes_are_counted_and_autograd_is_restored():
    original = torch.autograd.grad
    x = torch.randn(3, requires_grad=True)
    with counting_backward_passes() as passes:
        for _ in range(4):
            torch.autograd.grad((x**2).sum(), x)
    assert passes.count == 4
    assert torch.autograd.grad is original
    with pytest.raises(RuntimeError), counting_backward_passes():
        raise RuntimeError("the count must not outlive the block")
    assert torch.autograd.grad is original
