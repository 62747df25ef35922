"""Realistic wrong submissions for the graded assignments, one module per assignment.

Each module ``tests/mistakes/<assignment>.py`` (the assignment id without its number prefix,
e.g. ``change_of_variables.py`` for ``01_change_of_variables``) defines ``MISTAKES``, a list of
:class:`Mistake`. The end-to-end grading test builds a submission from the released student
notebook by filling every solution cell with the reference solution, applies one mistake, lets
nbgrader autograde it and asserts that exactly the points in ``loses`` are lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mistake:
    """One common error, written as a text substitution in one solution cell.

    Attributes:
        name: short identifier, used as the fake student's name (``[a-z0-9_]+``).
        description: the mistake in a student's terms, e.g. "û built with ‖w‖ instead of ‖w‖²".
        cell: ``grade_id`` of the solution cell the mistake is made in.
        old: text of the reference solution in that cell (must occur exactly once).
        new: what the student wrote instead.
        loses: ``grade_id`` of each graded test cell that must fail → the points it is worth
            (every other graded cell must keep its full points).
    """

    name: str
    description: str
    cell: str
    old: str
    new: str
    loses: dict[str, float] = field(default_factory=dict)
