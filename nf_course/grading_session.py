"""What every autograding kernel runs before the student's first cell (nbgrader_config.py).

Two things a correct submission must never lose points to:

- **chance**: this torch seeds its global generator anew in every process, so a network built in
  the notebook without a seed starts from other weights on every regrade; :func:`start` seeds
  ``torch``, ``numpy`` and ``random`` (``PYTHONHASHSEED`` is fixed in the kernel's environment);
- **warnings**: nbgrader scores 0 a test cell with any stderr output, and a warning from correct
  code (a deprecated torch function, ``float()`` of a tensor that requires grad in a debug print)
  lands in whichever cell first triggers it. Warnings are printed on stdout instead, marked as
  not graded; any other stderr output still fails its cell.

Tested by ``tests/test_grading_session.py`` and end to end by the correct rewrites of
``tests/correct`` (graded twice by ``tests/test_assignments.py``).
"""

from __future__ import annotations

import random
import sys
import warnings
from typing import TextIO

import numpy as np
import torch

__all__ = ["SEED", "WARNING_MARKER", "show_warning_on_stdout", "start"]

SEED = 0
WARNING_MARKER = "[warning, not graded] "


def show_warning_on_stdout(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A ``warnings.showwarning`` that writes to ``sys.stdout``, after :data:`WARNING_MARKER`."""
    text = warnings.formatwarning(message, category, filename, lineno, line)
    sys.stdout.write(WARNING_MARKER + text)


def start(seed: int = SEED) -> None:
    """Seed every global generator with ``seed`` and send warnings to stdout."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what student code uses)
    torch.manual_seed(seed)
    warnings.showwarning = show_warning_on_stdout
