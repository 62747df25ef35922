"""Correct submissions written the way other students would write them, one module per assignment.

Each module ``tests/correct/<assignment>.py`` (the assignment id without its number prefix, as in
``tests/mistakes/``) defines ``CORRECT``, a list of :class:`Rewrite`. The end-to-end grading test
fills every solution cell with the reference solution, replaces the cells a rewrite gives, lets
nbgrader autograde the notebook and asserts full marks: a correct answer in an unexpected style
(loops instead of vector code, another valid parametrization or algorithm, float32-minded code,
debug prints and warnings) must never lose a point.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rewrite:
    """A correct submission that differs from the reference in whole solution cells.

    Attributes:
        name: short identifier, used as the fake student's name (``[a-z0-9_]+``).
        description: the style in a student's terms, e.g. "a Python loop over the samples".
        cells: ``grade_id`` of a solution cell → the cell's full source as the student leaves it
            (the given scaffolding included); the other solution cells keep the reference.
    """

    name: str
    description: str
    cells: dict[str, str]
