"""The graded assignments end to end: release, autograding of fake submissions, feedback, grades.

For every assignment with a ``tests/mistakes`` module, a temporary course (see
``nbgrader_course``) regenerates the student version, and nbgrader autogrades, in one call, the
reference solution (full marks), the untouched student version (zero), one submission per
:class:`mistakes.Mistake` (exactly its ``loses`` points lost), one per correct rewrite (full
marks, and the same scores when graded again) and one that makes the hidden checks no-ops
(flagged by :mod:`nf_course.tamper`: every test after it scores 0). Hostile submissions of
assignment 01 (a hang, a hang that ignores SIGINT, edited and deleted test cells) go through
the real instructor tool, student by student (``tests/test_hostile.py`` has the others). The
courses are graded in parallel, each in its own folder with its own gradebook, while the session
starts; the tests then read the results.
"""

from __future__ import annotations

import csv
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import nbformat
import nbgrader_course as course
import psutil
import pytest
from mistakes import Mistake

from nf_course.tamper import read_flags

# A test waits for its course to be graded: minutes on an idle machine, much longer on a loaded
# one (about 30 submissions per assignment), so the limits are generous safety nets.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ASSIGNMENTS = course.assignments()
HOSTILE = "01_change_of_variables"
# Smaller time limits for the hostile course, so that its hangs cost less time in CI.
HOSTILE_CELL_TIMEOUT = 20
HOSTILE_OUTER_TIMEOUT = 150
STALL_TIMEOUT = 12  # shorter than the per-cell timeout: the tool, not nbgrader, stops it


# The correct rewrites are graded a second time (a correct answer must never lose a point by
# chance); the grading of every submission is seeded the same way, so they stand for all.
REGRADED = "style_"


@dataclass
class Graded:
    """A graded course: its root, what the grading commands printed and, for a course graded
    twice, every submission's cell scores of the first grading."""

    root: Path
    output: str
    first_scores: dict[str, dict[str, float]] = field(default_factory=dict)


def _grade_batch(root: Path, assignment: str) -> Graded:
    """Generate, submit the fake submissions and autograde them in one nbgrader call; then
    autograde the correct rewrites again, in new processes, for the regrade test."""
    course.make_course(root, [assignment])
    course.submit_fake_submissions(root, assignment)
    generated = course.nbgrader(root, "generate_assignment", assignment, "--force")
    graded = course.nbgrader(root, "autograde", assignment, "--force")
    first = {
        student: course.cell_scores(root, assignment, student)
        for student in course.expected_losses(assignment)
        if student.startswith(REGRADED)
    }
    regraded = course.nbgrader(root, "autograde", assignment, "--force", f"--student={REGRADED}*")
    steps = (generated, graded, regraded)
    return Graded(root, "\n".join(step.stdout + step.stderr for step in steps), first)


# ----------------------------------------------------------------------------- hostile cases

HANG = "import time\n\nwhile True:  # a loop that never ends\n    time.sleep(0.05)\n\n"
IGNORE_SIGINT = (
    "import signal\nimport time\n\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "while True:\n    time.sleep(0.05)\n\n"
)


def _mistake(name: str) -> Mistake:
    return next(m for m in course.mistakes(HOSTILE) if m.name == name)


def _hostile_submissions(root: Path) -> dict[str, dict[str, nbformat.NotebookNode]]:
    released = course.student_notebooks_from(course.REPOSITORY, HOSTILE)
    solutions = course.reference_solutions(root, HOSTILE)
    reference = course.fill_solutions(released, solutions)
    hanging = {name: dict(cells) for name, cells in solutions.items()}
    ignoring = {name: dict(cells) for name, cells in solutions.items()}
    for name in solutions:
        # The hang comes late: the cell is interrupted, the rest is graded. The loop that
        # ignores SIGINT comes first: every later cell then waits for its own timeout, so the
        # outer time limit of the instructor tool is what stops it.
        hanging[name]["01_linear_log_density"] = HANG + solutions[name]["01_linear_log_density"]
        ignoring[name]["01_affine_1d"] = IGNORE_SIGINT + solutions[name]["01_affine_1d"]
    edited = course.fill_solutions(released, solutions, _mistake("forward_log_det_sign"))
    for notebook in edited.values():
        for cell in notebook.cells:
            if cell.metadata.get("nbgrader", {}).get("grade"):
                cell.source = "pass  # the student emptied this test"
    deleted = course.fill_solutions(released, solutions, _mistake("affine_missing_jacobian"))
    for notebook in deleted.values():
        notebook.cells = [
            cell
            for cell in notebook.cells
            if cell.metadata.get("nbgrader", {}).get("grade_id") != "01_test_affine_1d"
        ]
    return {
        "deletes_test": deleted,
        "edits_tests": edited,
        "hangs": course.fill_solutions(released, hanging),
        "ignores_interrupt": course.fill_solutions(released, ignoring),
        "reference": reference,
    }


def _grade_hostile(root: Path) -> Graded:
    """Autograde the hostile submissions with the instructor tool, then feedback and grades."""
    extra = f"\nc.Execute.timeout = {HOSTILE_CELL_TIMEOUT}  # test course only: hangs cost less\n"
    course.make_course(root, [HOSTILE], extra_config=extra)
    generated = course.instructor(root, "generate", HOSTILE)
    for student, notebooks in _hostile_submissions(root).items():
        course.submit(root, HOSTILE, student, notebooks)
    graded = course.instructor(
        root, "autograde", HOSTILE, "--timeout", str(HOSTILE_OUTER_TIMEOUT), timeout=900
    )
    # A notebook still running at the outer time limit is killed, with its kernel.
    released = course.student_notebooks_from(course.REPOSITORY, HOSTILE)
    solutions = course.reference_solutions(root, HOSTILE)
    stalling = {name: dict(cells) for name, cells in solutions.items()}
    for name in solutions:
        stalling[name]["01_affine_1d"] = HANG + solutions[name]["01_affine_1d"]
    course.submit(root, HOSTILE, "stalls", course.fill_solutions(released, stalling))
    stopped = course.instructor(
        root, "autograde", HOSTILE, "--student", "stalls", "--timeout", str(STALL_TIMEOUT)
    )
    feedback = course.instructor(root, "feedback", HOSTILE)
    grades = course.instructor(root, "grades")
    steps = (generated, graded, stopped, feedback, grades)
    output = "\n".join(step.stdout + step.stderr for step in steps)
    return Graded(root, output)


@pytest.fixture(scope="session")
def graded_courses(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future]:
    """The courses the selected tests need, graded in the background.

    The hostile course (mostly waiting on timeouts) runs beside the batches, which run two at
    a time (they are CPU-bound; CI has 2 cores).
    """
    needed = set()
    for item in request.session.items:
        if "graded_courses" not in getattr(item, "fixturenames", ()):
            continue
        callspec = getattr(item, "callspec", None)
        needed.add(callspec.params["assignment"] if callspec else "hostile")
    base = tmp_path_factory.mktemp("courses")
    hostile_pool = ThreadPoolExecutor(max_workers=1)
    batch_pool = ThreadPoolExecutor(max_workers=2)
    futures = {}
    if "hostile" in needed:
        futures["hostile"] = hostile_pool.submit(_grade_hostile, base / "hostile")
    for assignment in ASSIGNMENTS:
        if assignment in needed:
            futures[assignment] = batch_pool.submit(_grade_batch, base / assignment, assignment)
    yield futures
    hostile_pool.shutdown()
    batch_pool.shutdown()


def _result(graded_courses: dict[str, Future], key: str) -> Graded:
    return graded_courses[key].result(timeout=3600)


# ----------------------------------------------------------------------------- release


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_equal_a_fresh_generate_assignment(graded_courses, assignment: str) -> None:
    graded = _result(graded_courses, assignment)
    fresh = course.student_notebooks_from(graded.root, assignment)
    committed = course.student_notebooks_from(course.REPOSITORY, assignment)
    assert sorted(fresh) == sorted(committed), "exercises/ lists other notebooks than solutions/"
    for name, notebook in fresh.items():
        assert notebook == committed[name], (
            f"exercises/{assignment}/{name} differs from a fresh generate_assignment: run "
            "`python -m nf_course.instructor generate` and commit the result"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_hold_no_solutions_nor_hidden_tests(assignment: str) -> None:
    released = course.student_notebooks_from(course.REPOSITORY, assignment)
    hidden_lines, solution_lines = course.protected_lines(course.REPOSITORY, assignment)
    assert hidden_lines and solution_lines
    for name, notebook in released.items():
        text = "\n".join(cell.source for cell in notebook.cells)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
            assert marker not in text, f"{name}: the marker {marker!r} was released"
        for line in hidden_lines | solution_lines:
            assert line not in text, f"{name}: a solution or hidden test line leaked: {line!r}"
        solution_cells = [
            c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")
        ]
        assert solution_cells
        for cell in solution_cells:
            assert "raise NotImplementedError()" in cell.source, cell.metadata["nbgrader"]


# ----------------------------------------------------------------------------- scores


def _cases() -> list[tuple[str, str]]:
    return [
        (assignment, student)
        for assignment in ASSIGNMENTS
        for student in course.expected_losses(assignment)
    ]


@pytest.mark.parametrize(("assignment", "student"), _cases())
def test_autograded_score(graded_courses, assignment: str, student: str) -> None:
    graded = _result(graded_courses, assignment)
    maximum = course.max_scores(graded.root, assignment)
    assert maximum and all(points > 0 for points in maximum.values()), maximum
    scores = course.cell_scores(graded.root, assignment, student)
    expected = course.expected_losses(assignment)[student]
    if expected is None:
        expected = dict(maximum)
    assert set(expected) <= set(maximum), (
        f"unknown grade_id in loses: {set(expected) - set(maximum)}"
    )
    lost = {cell: maximum[cell] - score for cell, score in scores.items() if score != maximum[cell]}
    assert lost == expected, (
        f"{assignment}, {student}: lost {lost}, expected to lose {expected}\n"
        + graded.output[-3000:]
    )
    flags = read_flags(graded.root / "grading" / "tamper", assignment, student)
    if student == course.TAMPERING_STUDENT:
        assert "[setattr]" in flags, flags
    else:
        assert flags == "", f"{assignment}, {student}: flagged as tampering: {flags}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_a_regrade_gives_the_same_score_in_every_cell(graded_courses, assignment: str) -> None:
    """The correct rewrites graded twice, by two nbgrader processes with their own kernels (this
    torch seeds its global generator anew in every process)."""
    graded = _result(graded_courses, assignment)
    assert graded.first_scores
    for student, first in graded.first_scores.items():
        again = course.cell_scores(graded.root, assignment, student)
        assert again == first, f"{assignment}, {student}: {first} then {again}"


# ----------------------------------------------------------------------------- hostile


def _status(root: Path) -> dict[str, dict[str, object]]:
    return json.loads((root / "grading" / "autograde_status.json").read_text())[HOSTILE]


def test_hostile_submissions_are_graded_student_by_student(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    status = _status(graded.root)
    assert set(status) == {
        "deletes_test",
        "edits_tests",
        "hangs",
        "ignores_interrupt",
        "reference",
        "stalls",
    }
    # nbgrader gives up on a kernel that does not answer the interrupt: that student only
    assert status["ignores_interrupt"]["status"] == "failed", graded.output[-3000:]
    assert "did not answer the interrupt" in status["ignores_interrupt"]["reason"]
    # a notebook still running at the outer limit is stopped by the tool
    assert status["stalls"]["status"] == "failed", graded.output[-3000:]
    assert "did not finish within" in status["stalls"]["reason"]
    assert status["stalls"]["seconds"] < STALL_TIMEOUT + 15
    failed = {"ignores_interrupt", "stalls"}
    others = {student: s for student, s in status.items() if student not in failed}
    assert all(s["status"] == "graded" for s in others.values()), (status, graded.output[-3000:])
    # a hang interrupted by the per-cell timeout costs the cell it is in (2 points of tests)
    expected = {"reference": 10.0, "hangs": 8.0, "edits_tests": 5.0, "deletes_test": 8.0}
    for student, score in expected.items():
        assert sum(course.cell_scores(graded.root, HOSTILE, student).values()) == score, student


def test_no_kernel_survives_the_outer_timeout(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    survivors = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        cwd = process.info.get("cwd") or ""
        if cwd.startswith(str(graded.root)):
            survivors.append(process.info)
    assert not survivors, survivors


def test_deleted_test_cell_is_put_back(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    folder = graded.root / "grading" / "autograded" / "deletes_test" / HOSTILE
    (path,) = course.notebook_paths(folder)
    ids = [
        cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nbformat.read(path, 4).cells
    ]
    assert "01_test_affine_1d" in ids
    scores = course.cell_scores(graded.root, HOSTILE, "deletes_test")
    assert scores["01_test_affine_1d"] == 0


def test_edited_test_cells_are_restored(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    folder = graded.root / "grading" / "autograded" / "edits_tests" / HOSTILE
    (path,) = course.notebook_paths(folder)
    notebook = nbformat.read(path, 4)
    assert "the student emptied this test" not in "\n".join(c.source for c in notebook.cells)


def test_feedback_hides_hidden_tests(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    hidden_lines, _ = course.protected_lines(course.REPOSITORY, HOSTILE)
    pages = sorted((graded.root / "grading" / "feedback").glob(f"*/{HOSTILE}/*.html"))
    students = {page.parts[-3] for page in pages}
    assert students == {"deletes_test", "edits_tests", "hangs", "reference"}, graded.output[-3000:]
    for page in pages:
        html = unescape(re.sub(r"<[^>]+>", "", page.read_text()))  # the text, without tags
        assert "hidden tests: their code is not shown" in html
        for line in hidden_lines:
            assert line not in html, f"{page}: hidden test code in the feedback: {line!r}"
        assert "HIDDEN TESTS" not in html
    failing = (graded.root / "grading/feedback/edits_tests" / HOSTILE).glob("*.html")
    html = next(failing).read_text()
    # the student learns what failed, in the checker's words, without the code that checked it
    assert re.search(r"BijectorCheckError|GradingCheckError", html)
    assert "log_det_forward" in html


def test_grades_table(graded_courses) -> None:
    graded = _result(graded_courses, "hostile")
    with (graded.root / "grading" / "grades.csv").open() as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert float(rows["reference"]["score"]) == 10.0
    assert float(rows["edits_tests"]["score"]) == 5.0
    for student in ("ignores_interrupt", "stalls"):
        assert float(rows[student]["score"]) == 0.0
        assert rows[student]["status"] == "failed"
        assert "scored 0" in rows[student]["reason"]
    assert all(float(row["max_score"]) == 10.0 for row in rows.values())


# The size of each mistake catalogue before the audit of issue 11; since then every assignment
# is graded against at least eight more realistic mistakes and five correct rewrites.
MISTAKES_BEFORE_AUDIT = {
    "01_change_of_variables": 7,
    "02_linear_flows": 7,
    "03_planar": 5,
    "04_coupling": 6,
    "05_autoregressive": 6,
    "06_glow": 6,
    "07_residual": 7,
    "08_continuous": 5,
}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_is_graded_against_many_mistakes_and_styles(assignment: str) -> None:
    mistakes, rewrites = course.mistakes(assignment), course.rewrites(assignment)
    assert len(mistakes) >= MISTAKES_BEFORE_AUDIT[assignment] + 8, [m.name for m in mistakes]
    assert len(rewrites) >= 5, [r.name for r in rewrites]
    names = [m.name for m in mistakes] + [f"style_{r.name}" for r in rewrites]
    assert len(set(names)) == len(names), "two fake students share a name"
