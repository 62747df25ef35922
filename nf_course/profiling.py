"""Measuring costs the way the book and the benchmarks report them: the median wall-clock time
of a call, and the number of backward passes a computation makes (the cost unit of the exact
trace of a continuous flow, chapters 10 and 11; ``benchmarks/cnf_trace.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from nf_course.common import positive_int

__all__ = ["BackwardPasses", "counting_backward_passes", "median_seconds"]


def median_seconds(call: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock time of ``call()`` in seconds over ``repeats`` runs, after ``warmup``
    untimed runs (the first call often pays for allocations and lazy imports)."""
    positive_int(repeats, "repeats", "median_seconds")
    positive_int(warmup, "warmup", "median_seconds", minimum=0)
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class BackwardPasses:
    """How many times ``torch.autograd.grad`` ran inside :func:`counting_backward_passes`."""

    count: int = 0


@contextmanager
def counting_backward_passes() -> Iterator[BackwardPasses]:
    """Count the calls of ``torch.autograd.grad`` made inside the block (in this thread)."""
    original, passes = torch.autograd.grad, BackwardPasses()

    def counted(*args: object, **kwargs: object) -> object:
        passes.count += 1
        return original(*args, **kwargs)

    torch.autograd.grad = counted
    try:
        yield passes
    finally:
        torch.autograd.grad = original
