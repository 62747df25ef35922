"""Helpers of the grading tests: a throw-away nbgrader course, fake submissions, their scores.

A course is a temporary copy of ``nbgrader_config.py``, ``solutions/<assignment>`` and
``exercises/<assignment>``, with its own workspace and gradebook, so tests never touch the
repository's ``grading/`` and several courses can be graded at the same time.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from correct import Rewrite
from mistakes import Mistake

REPOSITORY = Path(__file__).resolve().parents[1]
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def assignments() -> list[str]:
    """The assignment ids of ``solutions/`` (each has modules in ``tests/mistakes`` and
    ``tests/correct``; a test checks it)."""
    return sorted(p.name for p in (REPOSITORY / "solutions").iterdir() if p.is_dir())


def topic(assignment: str) -> str:
    """``01_change_of_variables`` -> ``change_of_variables``."""
    return assignment.split("_", 1)[1]


def mistakes(assignment: str) -> list[Mistake]:
    """The ``MISTAKES`` list of the assignment's module in ``tests/mistakes``."""
    return importlib.import_module(f"mistakes.{topic(assignment)}").MISTAKES


def rewrites(assignment: str) -> list[Rewrite]:
    """The ``CORRECT`` list of the assignment's module in ``tests/correct``."""
    return importlib.import_module(f"correct.{topic(assignment)}").CORRECT


def notebook_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ipynb"))


def nbgrader_env() -> dict[str, str]:
    """The environment for nbgrader: the venv's ``bin`` first (nbgrader calls ``alembic``)."""
    env = {**os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("NBGRADER_EXECUTION", None)
    return env


def make_course(root: Path, names: list[str], *, extra_config: str = "") -> Path:
    """Copy the configuration and the sources of the given assignments into ``root``.

    The student versions are not copied: ``generate_assignment`` writes them (and fills the
    course's own gradebook), so they can be compared with the committed ``exercises/``.
    """
    root.mkdir(parents=True, exist_ok=True)
    config = (REPOSITORY / "nbgrader_config.py").read_text()
    (root / "nbgrader_config.py").write_text(config + extra_config)
    for name in names:
        shutil.copytree(REPOSITORY / "solutions" / name, root / "solutions" / name)
    return root


def nbgrader(root: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in ``root`` and return the finished process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=root,
        env=nbgrader_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def instructor(root: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run the instructor tool ``python -m nf_course.instructor --root ROOT ARGS``."""
    return subprocess.run(
        [sys.executable, "-m", "nf_course.instructor", "--root", str(root), *args],
        cwd=root,
        env=nbgrader_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def solution_code(source: str) -> str:
    """The reference solution as a student would type it: the delimiter lines removed."""
    lines = source.splitlines()
    return "\n".join(line for line in lines if line.strip() not in SOLUTION_MARKERS)


def reference_solutions(root: Path, assignment: str) -> dict[str, dict[str, str]]:
    """``{notebook file name: {grade_id of a solution cell: reference code}}``."""
    result = {}
    for path in notebook_paths(root / "solutions" / assignment):
        notebook = nbformat.read(path, as_version=4)
        result[path.name] = {
            cell.metadata["nbgrader"]["grade_id"]: solution_code(cell.source)
            for cell in notebook.cells
            if cell.metadata.get("nbgrader", {}).get("solution")
        }
    return result


def student_notebooks_from(root: Path, assignment: str) -> dict[str, nbformat.NotebookNode]:
    """The released (student) notebooks of the course at ``root``, by file name."""
    folder = root / "exercises" / assignment
    return {path.name: nbformat.read(path, as_version=4) for path in notebook_paths(folder)}


def protected_lines(root: Path, assignment: str) -> tuple[set[str], set[str]]:
    """The lines only hidden tests and reference solutions contain (stripped, 12+ characters).

    Lines that also occur in the public part of the notebooks (given code, visible tests) are
    left out. None of these may appear in what students get: the exercises and the feedback.
    """
    hidden: set[str] = set()
    solution: set[str] = set()
    public: set[str] = set()
    for path in notebook_paths(root / "solutions" / assignment):
        for cell in nbformat.read(path, as_version=4).cells:
            target = public
            for line in cell.source.splitlines():
                stripped = line.strip()
                if "### BEGIN HIDDEN TESTS" in stripped or "### BEGIN SOLUTION" in stripped:
                    target = hidden if "HIDDEN" in stripped else solution
                elif "### END" in stripped:
                    target = public
                elif len(stripped) >= 12:
                    target.add(stripped)
    return hidden - public, solution - public


def fill_solutions(
    notebooks: dict[str, nbformat.NotebookNode],
    solutions: dict[str, dict[str, str]],
    mistake: Mistake | None = None,
    rewrite: Rewrite | None = None,
) -> dict[str, nbformat.NotebookNode]:
    """Copies of the student notebooks with every solution cell filled in: with the reference,
    the cells of ``rewrite`` in its own words, and one ``mistake`` made."""
    filled = {}
    found = mistake is None
    unused = set(rewrite.cells) if rewrite is not None else set()
    for name, notebook in notebooks.items():
        notebook = nbformat.from_dict(notebook)
        for cell in notebook.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id not in solutions[name]:
                continue
            cell.source = solutions[name][grade_id]
            if rewrite is not None and grade_id in rewrite.cells:
                cell.source = rewrite.cells[grade_id]
                unused.discard(grade_id)
            if mistake is not None and grade_id == mistake.cell:
                count = cell.source.count(mistake.old)
                if count != 1:
                    raise ValueError(
                        f"mistake {mistake.name}: {mistake.old!r} occurs {count} times in "
                        f"cell {grade_id}, expected exactly once"
                    )
                cell.source = cell.source.replace(mistake.old, mistake.new)
                found = True
        filled[name] = notebook
    if not found:
        raise ValueError(f"mistake {mistake.name}: no solution cell {mistake.cell!r}")
    if unused:
        raise ValueError(f"rewrite {rewrite.name}: no solution cells {sorted(unused)}")
    return filled


def submit(
    root: Path, assignment: str, student: str, notebooks: dict[str, nbformat.NotebookNode]
) -> None:
    """Place a submission where nbgrader looks for it."""
    folder = root / "grading" / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, notebook in notebooks.items():
        nbformat.write(notebook, str(folder / name))


# A hostile answer that works in any assignment: the first solution cell starts by making every
# check of the hidden tests a no-op (nf_course.tamper must flag it; every graded test after it
# then scores 0, whatever the answers).
TAMPERING_STUDENT = "tampers_with_checks"
TAMPERING = """import importlib
import pkgutil

import nf_course.grading_checks

for info in pkgutil.iter_modules(nf_course.grading_checks.__path__):
    module = importlib.import_module(f"nf_course.grading_checks.{info.name}")
    for name in dir(module):
        if name.startswith("check_"):
            setattr(module, name, lambda *args, **kwargs: None)

"""


def _first_solution_cell(notebooks: dict[str, nbformat.NotebookNode]) -> tuple[str, int]:
    for name, notebook in sorted(notebooks.items()):
        for index, cell in enumerate(notebook.cells):
            if cell.metadata.get("nbgrader", {}).get("solution"):
                return name, index
    raise ValueError("no solution cell")


def tampering_submission(
    notebooks: dict[str, nbformat.NotebookNode], solutions: dict[str, dict[str, str]]
) -> dict[str, nbformat.NotebookNode]:
    """The reference solution with :data:`TAMPERING` at the top of the first solution cell."""
    filled = fill_solutions(notebooks, solutions)
    name, index = _first_solution_cell(filled)
    cell = filled[name].cells[index]
    cell.source = TAMPERING + cell.source
    return filled


def tampering_losses(assignment: str) -> dict[str, float]:
    """Every graded cell after the first solution cell, with all its points."""
    released = student_notebooks_from(REPOSITORY, assignment)
    name, first = _first_solution_cell(released)
    return {
        cell.metadata["nbgrader"]["grade_id"]: float(cell.metadata["nbgrader"]["points"])
        for index, cell in enumerate(released[name].cells)
        if index > first and cell.metadata.get("nbgrader", {}).get("grade")
    }


def submit_fake_submissions(root: Path, assignment: str) -> None:
    """Submit the reference solution, the untouched student version, the tampering one, one
    submission per correct rewrite and one per common mistake of ``assignment`` (students
    ``reference``, ``untouched``, :data:`TAMPERING_STUDENT`, ``style_<rewrite>`` and each
    mistake's name) in the course at ``root``; the
    released notebooks are the repository's."""
    released = student_notebooks_from(REPOSITORY, assignment)
    solutions = reference_solutions(root, assignment)
    submit(root, assignment, "reference", fill_solutions(released, solutions))
    submit(root, assignment, "untouched", released)
    submit(root, assignment, TAMPERING_STUDENT, tampering_submission(released, solutions))
    for rewrite in rewrites(assignment):
        filled = fill_solutions(released, solutions, rewrite=rewrite)
        submit(root, assignment, f"style_{rewrite.name}", filled)
    for mistake in mistakes(assignment):
        submit(root, assignment, mistake.name, fill_solutions(released, solutions, mistake))


def expected_losses(assignment: str) -> dict[str, dict[str, float] | None]:
    """``{student: {grade_id: points lost}}`` of the fake submissions; ``None``: every point."""
    losses: dict[str, dict[str, float] | None] = {"reference": {}, "untouched": None}
    losses[TAMPERING_STUDENT] = tampering_losses(assignment)
    losses.update({f"style_{rewrite.name}": {} for rewrite in rewrites(assignment)})
    losses.update({mistake.name: dict(mistake.loses) for mistake in mistakes(assignment)})
    return losses


def cell_scores(root: Path, assignment: str, student: str) -> dict[str, float]:
    """``{grade_id: points scored}`` of an autograded submission, from the gradebook."""
    from nbgrader.api import Gradebook

    scores: dict[str, float] = {}
    with Gradebook("sqlite:///" + str(root / "grading" / "gradebook.db")) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                scores[grade.name] = grade.score
    return scores


def max_scores(root: Path, assignment: str) -> dict[str, float]:
    """``{grade_id: points}`` of every graded cell of the assignment."""
    from nbgrader.api import Gradebook

    with Gradebook("sqlite:///" + str(root / "grading" / "gradebook.db")) as gradebook:
        return {
            cell.name: cell.max_score
            for notebook in gradebook.find_assignment(assignment).notebooks
            for cell in notebook.grade_cells
        }
