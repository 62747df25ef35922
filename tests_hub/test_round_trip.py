"""A semester's round trip on the real course hub (loopback), as students and an instructor live it.

The instructor releases assignment 01 (``conftest.course_hub``). Two students log in on the
hub's login form, start their servers, list and fetch the assignment through the endpoints of
JupyterLab's Assignments tab, write answers through the contents API, validate them with the
Validate button's endpoint and submit: alice first with a mistake, then the reference solution
(two submissions), bob once with a mistake. The hub is restarted between submission and
collection. The instructor collects, autogrades with ``python -m nf_course.instructor``,
generates and releases feedback; each student fetches their feedback. The fixture runs it all
once and records what happened; each test asserts one part of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import nbformat
import nbgrader_course as course
import pytest
import requests
from conftest import ASSIGNMENT, STUDENTS, timed
from hubtest import CourseHub, Student, can_read, hub_processes

from hub import book, control

pytestmark = pytest.mark.timeout(1800)

NOTEBOOK_FILE = f"{ASSIGNMENT}.ipynb"
NOTEBOOK = f"{ASSIGNMENT}/{NOTEBOOK_FILE}"
ALICE, BOB = STUDENTS[0], STUDENTS[1]
FIRST_MISTAKE = "density_adds_volume"  # alice's first submission
BOB_MISTAKE = "forward_log_det_sign"
CHAPTER = "book/02_change_of_variables.md"
SCORE = re.compile(r"\(Score: ([\d.]+) / ([\d.]+)\)")


@dataclass
class RoundTrip:
    """What the round trip saw, step by step."""

    hub: CourseHub
    students: dict[str, Student]
    released: dict = field(default_factory=dict)  # the notebook alice fetched (JSON)
    listed: list = field(default_factory=list)  # alice's Assignments list before fetching
    validations: dict[str, dict] = field(default_factory=dict)  # "alice-mistake" -> response
    submissions: dict[str, list[str]] = field(default_factory=dict)  # student -> timestamps
    inbound_before_restart: list[str] = field(default_factory=list)
    restart: dict[str, object] = field(default_factory=dict)
    collected_timestamp: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    max_score: float = 0.0
    feedback: dict[str, str] = field(default_factory=dict)  # student -> HTML they fetched
    formgrader: dict[str, int] = field(default_factory=dict)  # user -> final HTTP status
    chapter: dict = field(default_factory=dict)
    chapter_folder: list[str] = field(default_factory=list)
    server_limits: str = ""


def _answers(student: Student, mistake: str | None) -> nbformat.NotebookNode:
    released = nbformat.from_dict(student.read_notebook(NOTEBOOK))
    chosen = None
    if mistake is not None:
        chosen = next(m for m in course.mistakes(ASSIGNMENT) if m.name == mistake)
    solutions = course.reference_solutions(course.REPOSITORY, ASSIGNMENT)
    return course.fill_solutions({NOTEBOOK_FILE: released}, solutions, chosen)[NOTEBOOK_FILE]


def _answer_validate_submit(trip: RoundTrip, name: str, mistake: str | None, label: str) -> None:
    student = trip.students[name]
    with timed(f"{label}: write answers (contents API), validate, submit"):
        student.write_notebook(NOTEBOOK, _answers(student, mistake))
        trip.validations[label] = student.validate(NOTEBOOK)
        listing = student.action("submit", ASSIGNMENT)
    assert listing["success"], listing
    submitted = [a for a in listing["value"] if a["status"] == "submitted"]
    trip.submissions[name] = [s["timestamp"] for s in submitted[0]["submissions"]]


def _inbound(hub: CourseHub) -> list[str]:
    inbound = hub.settings.exchange / hub.settings.course_id / "inbound"
    return sorted(path.name for path in inbound.iterdir())


def _final_status(session: requests.Session, url: str) -> int:
    return session.get(url, timeout=60).status_code


@pytest.fixture(scope="module")
def trip(course_hub: CourseHub) -> RoundTrip:
    hub = course_hub
    trip = RoundTrip(hub, {name: Student(hub, name) for name in (ALICE, BOB)})
    for name, student in trip.students.items():
        with timed(f"{name}: log in and start the server"):
            assert student.login().status_code == 200
            student.start_server()
    alice, bob = trip.students[ALICE], trip.students[BOB]
    # Every process of alice's (her server; kernels inherit the same limits).
    (server, *_) = hub_processes([ALICE])
    trip.server_limits = Path(f"/proc/{server.split()[0]}/limits").read_text()
    with timed("both: list and fetch the assignment (Assignments tab endpoints)"):
        trip.listed = alice.assignments()
        for student in trip.students.values():
            fetched = student.action("fetch", ASSIGNMENT)
            assert fetched["success"], fetched
    trip.released = alice.read_notebook(NOTEBOOK)
    _answer_validate_submit(trip, ALICE, FIRST_MISTAKE, "alice-mistake")
    _answer_validate_submit(trip, ALICE, None, "alice-correct")
    _answer_validate_submit(trip, BOB, BOB_MISTAKE, "bob-mistake")
    trip.inbound_before_restart = _inbound(hub)

    with timed("hub restart (stop: servers and proxy too; start)"):
        hub.cli("stop")
        trip.restart["processes_after_stop"] = hub_processes(hub.accounts())
        trip.restart["health_after_stop"] = control.healthy(hub.settings)
        hub.cli("start")
    trip.restart["inbound_after"] = _inbound(hub)
    trip.restart["alice_still_logged_in"] = alice.whoami().json().get("name")
    with timed("both: servers again after the restart"):
        for student in trip.students.values():
            student.start_server()
    trip.restart["alice_notebook_after"] = alice.read_notebook(NOTEBOOK)

    with timed("instructor: collect (python -m hub collect)"):
        hub.cli("collect", ASSIGNMENT)
    submitted = hub.settings.course_root / "grading" / "submitted"
    for name in (ALICE, BOB):
        stamp = submitted / name / ASSIGNMENT / "timestamp.txt"
        trip.collected_timestamp[name] = stamp.read_text().strip()
    with timed("instructor: autograde (python -m nf_course.instructor autograde)"):
        hub.instructor_tool("autograde", ASSIGNMENT)
    with timed("instructor: feedback (nf_course.instructor feedback, hub return-feedback)"):
        hub.instructor_tool("feedback", ASSIGNMENT)
        hub.cli("return-feedback", ASSIGNMENT)
    from nbgrader.api import Gradebook

    gradebook = "sqlite:///" + str(hub.settings.course_root / "grading" / "gradebook.db")
    with Gradebook(gradebook) as books:
        trip.max_score = books.find_assignment(ASSIGNMENT).max_score
        for name in (ALICE, BOB):
            trip.scores[name] = books.find_submission(ASSIGNMENT, name).score
    with timed("both: fetch feedback (Assignments tab endpoint) and read it"):
        for name, student in trip.students.items():
            assert student.action("fetch_feedback", ASSIGNMENT)["success"]
            folder = student.get(f"api/contents/{ASSIGNMENT}/feedback").json()
            (latest,) = [item for item in folder["content"] if item["type"] == "directory"]
            page = student.get(
                f"api/contents/{latest['path']}/{ASSIGNMENT}.html",
                type="file",
                format="text",
                content="1",
            )
            trip.feedback[name] = page.json()["content"]

    formgrader = f"{hub.url}/services/{hub.settings.course_id}/formgrader"
    teacher = Student(hub, hub.instructor)
    assert teacher.login().status_code == 200
    trip.formgrader = {
        ALICE: _final_status(alice.session, formgrader),
        BOB: _final_status(bob.session, formgrader),
        hub.instructor: _final_status(teacher.session, formgrader),
    }
    with timed("alice: open a chapter from the book's launch link (nbgitpuller)"):
        launch = alice.session.get(book.launch_url(hub.settings, CHAPTER), timeout=60)
        assert launch.status_code == 200 and "/git-pull" in launch.url, launch.url
        url, branch = book.repository()
        pulled = alice.get("git-pull/api", repo=url, branch=branch)
        assert '"phase": "finished"' in pulled.text, pulled.text
    name = url.rsplit("/", 1)[-1]
    trip.chapter = alice.read_notebook(f"{name}/{CHAPTER}")
    listing = alice.get(f"api/contents/{name}").json()["content"]
    trip.chapter_folder = sorted(item["name"] for item in listing)
    return trip


# ------------------------------------------------------------------------- the students' side


def test_students_see_the_released_assignment(trip: RoundTrip) -> None:
    assert [(a["assignment_id"], a["status"]) for a in trip.listed] == [(ASSIGNMENT, "released")]


def test_released_notebook_holds_no_solution_and_no_hidden_test(trip: RoundTrip) -> None:
    hidden, solution = course.protected_lines(course.REPOSITORY, ASSIGNMENT)
    assert hidden and solution
    text = "\n".join(cell["source"] for cell in trip.released["cells"])
    leaked = sorted(line for line in hidden | solution if line in text)
    assert not leaked, f"the released notebook shows: {leaked}"
    assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text


def test_validate_passes_the_reference_and_reports_the_mistakes(trip: RoundTrip) -> None:
    correct = trip.validations["alice-correct"]
    assert correct["success"] and not correct["value"].get("failed"), correct
    for label in ("alice-mistake", "bob-mistake"):
        response = trip.validations[label]
        assert response["success"] and response["value"]["failed"], (label, response)


def test_a_second_submission_keeps_both_timestamps_and_the_later_is_graded(trip) -> None:
    first, second = sorted(trip.submissions[ALICE])
    assert first != second
    alice_inbound = [name for name in trip.inbound_before_restart if name.startswith(ALICE)]
    assert len(alice_inbound) == 2
    assert trip.collected_timestamp[ALICE] == second
    assert trip.scores[ALICE] == trip.max_score  # the later one is the reference solution


def test_scores_full_marks_for_the_reference_fewer_for_the_mistake(trip: RoundTrip) -> None:
    mistake = next(m for m in course.mistakes(ASSIGNMENT) if m.name == BOB_MISTAKE)
    assert trip.max_score > 0
    assert trip.scores[ALICE] == trip.max_score
    assert trip.scores[BOB] == trip.max_score - sum(mistake.loses.values())


def test_each_student_fetches_feedback_with_their_score_and_no_hidden_test(trip) -> None:
    hidden, _ = course.protected_lines(course.REPOSITORY, ASSIGNMENT)
    for name in (ALICE, BOB):
        html = unescape(trip.feedback[name])
        score, maximum = (float(x) for x in SCORE.search(html).groups())
        assert (score, maximum) == (round(trip.scores[name], 2), round(trip.max_score, 2))
        leaked = [line for line in hidden if line in html]
        assert not leaked, f"{name}'s feedback shows hidden tests: {leaked}"


def test_a_chapter_from_the_book_lands_as_a_notebook(trip: RoundTrip) -> None:
    assert trip.chapter["nbformat"] == 4
    code = [cell for cell in trip.chapter["cells"] if cell["cell_type"] == "code"]
    assert code and any("nf_course" in cell["source"] for cell in code)
    # The mirror holds the book only: nothing of solutions/ reaches students this way.
    assert trip.chapter_folder == ["book"]


def test_students_servers_run_under_the_course_limits(trip: RoundTrip) -> None:
    limits = {
        line[:26].strip(): line[26:].split()[:2] for line in trip.server_limits.splitlines()[1:]
    }
    memory = str(trip.hub.settings.memory_per_process)
    assert limits["Max address space"] == [memory, memory]
    processes = str(trip.hub.settings.processes_per_student)
    assert limits["Max processes"] == [processes, processes]


# ---------------------------------------------------------------------- restarts and rights


def test_a_hub_restart_after_submission_loses_nothing(trip: RoundTrip) -> None:
    assert trip.restart["processes_after_stop"] == [], "stopping left processes running"
    assert trip.restart["health_after_stop"] is False
    assert trip.restart["inbound_after"] == trip.inbound_before_restart
    ours = [name for name in trip.inbound_before_restart if name.startswith((ALICE, BOB))]
    assert len(ours) == 3  # alice twice, bob once
    assert trip.restart["alice_still_logged_in"] == ALICE  # database and cookie secret kept
    cells = trip.restart["alice_notebook_after"]["cells"]
    assert any("math.log(abs(scale))" in cell["source"] for cell in cells)  # her answers


def test_only_instructors_reach_formgrader(trip: RoundTrip) -> None:
    assert trip.formgrader == {ALICE: 403, BOB: 403, trip.hub.instructor: 200}


def test_a_student_reads_neither_another_student_nor_the_course(trip: RoundTrip) -> None:
    hub = trip.hub.settings
    alice_home = Path(trip.hub.root) / "homes" / ALICE
    closed = {
        "alice's home": alice_home,
        "alice's fetched assignment": alice_home / NOTEBOOK,
        "the exchange's inbound (submissions)": hub.exchange / hub.course_id / "inbound",
        "the course root": hub.course_root,
        "the course's solutions/": hub.course_root / "solutions" / ASSIGNMENT / NOTEBOOK_FILE,
        "the gradebook": hub.course_root / "grading" / "gradebook.db",
        "the instructor's repository": course.REPOSITORY,
        "the repository's solutions/": course.REPOSITORY / "solutions" / ASSIGNMENT,
        "the hub's database": hub.hub_state / "jupyterhub.sqlite",
    }
    for what, path in closed.items():
        assert path.exists(), path
        assert can_read(BOB, path) == "denied", f"{BOB} can read {what} ({path})"
    # ... while what nbgrader shares with students stays readable.
    released = hub.exchange / hub.course_id / "outbound" / ASSIGNMENT / NOTEBOOK_FILE
    assert can_read(BOB, released) == "read"


def test_the_inbound_keeps_submissions_of_other_students_unlisted(trip: RoundTrip) -> None:
    # nbgrader's inbound is write-only for students (733): bob cannot list it, so the names of
    # alice's submissions (student+assignment+timestamp+12 random characters) stay unknown.
    inbound = trip.hub.settings.exchange / trip.hub.settings.course_id / "inbound"
    assert oct(inbound.stat().st_mode & 0o777) == "0o733"
    assert can_read(BOB, inbound) == "denied"
    assert all(re.search(r"\+[A-Za-z0-9_-]{12}$", name) for name in trip.inbound_before_restart)
