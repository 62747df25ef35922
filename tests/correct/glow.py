"""Correct submissions of the assignment in other styles (see tests/correct/__init__.py)."""

from correct import Rewrite

CORRECT: list[Rewrite] = []
