"""The hostile catalogue (tests/hostile) graded end to end with the instructor's commands.

One throw-away course of assignment 01 (see ``nbgrader_course``) gets every hostile submission,
the reference solution and one existing mistake; ``instructor autograde --jobs 2``,
``feedback`` and ``grades`` run as an instructor runs them, while the test listens on a local
port and watches the course's and the package's files. Each hostile submission must score
exactly its expected points with its recorded reason (a tampering flag in ``grades.csv``, or
the sandbox's error in its feedback); no feedback may hold a line of the hidden tests or of
the reference solutions that the student did not write; no file may be read, written or
damaged; no connection may reach the host; the reference and the mistake score as before.
"""

from __future__ import annotations

import csv
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import nbgrader_course as course
import psutil
import pytest
from hostile import ASSIGNMENT, CATALOGUE, WRONG, Hostile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CELL_TIMEOUT = 20  # seconds per cell in the test course (a fork bomb's sleepers, an allocation)
OUTER_TIMEOUT = 150
MISTAKE = "forward_log_det_sign"
PROBE = course.REPOSITORY / "nf_course" / "hostile_probe.py"
WRITTEN = ("pwned.txt", "solutions/pwned.txt", "grading/submitted/reference/pwned.txt")


@dataclass
class Run:
    """What one grading run left: the course, the grade rows, what the commands printed, the
    connections the listener saw, and file digests before and after."""

    root: Path
    rows: dict[str, dict[str, str]]
    output: str
    connections: int
    before: dict[str, str]
    after: dict[str, str]
    seconds: float


def _digests(root: Path) -> dict[str, str]:
    """SHA-256 of the files a submission must not change: the instructor's notebooks, the
    released ones, the reference student's submission and the nf_course package."""
    folders = [
        root / "solutions",
        root / "exercises",
        root / "grading" / "submitted" / "reference",
        course.REPOSITORY / "nf_course",
    ]
    digests = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _notebooks(entry: Hostile, root: Path, port: int) -> dict:
    """The submission of a catalogue entry, its templates filled in."""
    released = course.student_notebooks_from(course.REPOSITORY, ASSIGNMENT)
    solutions = course.reference_solutions(root, ASSIGNMENT)
    cells = {}
    for name, reference in solutions.items():
        cells[name] = {g: WRONG[g] if entry.wrong else code for g, code in reference.items()}
        for grade_id, template in entry.cells.items():
            source = template.replace("{reference}", reference[grade_id])
            for key, value in (
                ("course", str(root)),
                ("repository", str(course.REPOSITORY)),
                ("port", str(port)),
                ("assignment", ASSIGNMENT),
            ):
                source = source.replace("{" + key + "}", value)
            cells[name][grade_id] = source
    notebooks = course.fill_solutions(released, cells)
    if entry.given:
        for notebook in notebooks.values():
            (cell,) = [c for c in notebook.cells if "from nf_course.checks import" in c.source]
            cell.source = entry.given
    return notebooks


def _listen() -> tuple[socket.socket, list[bytes], threading.Event]:
    """A TCP listener on 127.0.0.1 that records every connection until the event is set."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            seen.append(connection.recv(16))
            connection.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, seen, stop


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("hostile") / "course"
    extra = f"\nc.Execute.timeout = {CELL_TIMEOUT}  # test course only\n"
    course.make_course(root, [ASSIGNMENT], extra_config=extra)
    steps = [course.instructor(root, "generate", ASSIGNMENT)]
    server, seen, stop = _listen()
    port = server.getsockname()[1]
    released = course.student_notebooks_from(course.REPOSITORY, ASSIGNMENT)
    solutions = course.reference_solutions(root, ASSIGNMENT)
    mistake = next(m for m in course.mistakes(ASSIGNMENT) if m.name == MISTAKE)
    course.submit(root, ASSIGNMENT, "reference", course.fill_solutions(released, solutions))
    course.submit(root, ASSIGNMENT, MISTAKE, course.fill_solutions(released, solutions, mistake))
    for entry in CATALOGUE:
        course.submit(root, ASSIGNMENT, entry.name, _notebooks(entry, root, port))
    before = _digests(root)
    started = time.monotonic()
    steps.append(
        course.instructor(
            root, "autograde", ASSIGNMENT, "--jobs", "2", "--timeout", str(OUTER_TIMEOUT)
        )
    )
    seconds = time.monotonic() - started
    steps += [course.instructor(root, "feedback", ASSIGNMENT), course.instructor(root, "grades")]
    stop.set()
    after = _digests(root)
    output = "\n".join(step.stdout + step.stderr for step in steps)
    with (root / "grading" / "grades.csv").open() as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    yield Run(root, rows, output, len(seen), before, after, seconds)
    PROBE.unlink(missing_ok=True)  # only there if the sandbox failed; the test says so


def _feedback_text(root: Path, student: str) -> str:
    pages = sorted((root / "grading" / "feedback" / student / ASSIGNMENT).glob("*.html"))
    return "\n".join(unescape(re.sub(r"<[^>]+>", "", page.read_text())) for page in pages)


def test_the_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 12
    assert len({entry.name for entry in CATALOGUE}) == len(CATALOGUE)
    assert all(entry.flag or entry.failure for entry in CATALOGUE)


@pytest.mark.parametrize("entry", CATALOGUE, ids=[entry.name for entry in CATALOGUE])
def test_hostile_submission_scores_its_due_with_a_reason(run: Run, entry: Hostile) -> None:
    row = run.rows.get(entry.name)
    assert row is not None, run.output[-3000:]
    assert row["status"] == "graded", (row, run.output[-3000:])
    assert float(row["score"]) == entry.score, (row, run.output[-3000:])
    if entry.flag:
        assert f"[{entry.flag}]" in row["flag"], row
        assert f"{entry.name}: graded" in run.output and "FLAGGED for review" in run.output
    else:
        assert row["flag"] == "", row
        assert re.search(entry.failure, _feedback_text(run.root, entry.name)), entry.name


def test_reference_and_mistake_score_as_before(run: Run) -> None:
    assert float(run.rows["reference"]["score"]) == 10.0, run.output[-3000:]
    mistake = next(m for m in course.mistakes(ASSIGNMENT) if m.name == MISTAKE)
    assert float(run.rows[MISTAKE]["score"]) == 10.0 - sum(mistake.loses.values())
    assert run.rows["reference"]["flag"] == run.rows[MISTAKE]["flag"] == ""


def test_feedback_shows_no_protected_line(run: Run) -> None:
    hidden, solution = course.protected_lines(course.REPOSITORY, ASSIGNMENT)
    for student in run.rows:
        text = _feedback_text(run.root, student)
        assert text, student
        leaked = [line for line in hidden if line in text]
        entry = next((e for e in CATALOGUE if e.name == student), None)
        if entry is not None and entry.wrong:  # it wrote no reference line itself
            leaked += [line for line in solution if line in text]
        assert not leaked, f"{student}'s feedback shows {leaked[:3]}"


def test_nothing_is_written_or_damaged(run: Run) -> None:
    assert not PROBE.exists(), "a submission wrote into the nf_course package"
    for path in WRITTEN:
        assert not (run.root / path).exists(), f"a submission wrote {path}"
    changed = sorted(path for path in run.before if run.after.get(path) != run.before[path])
    added = sorted(set(run.after) - set(run.before))
    assert not changed and not added, (changed, added)
    filler = list(run.root.rglob("filler*.pt"))
    assert not filler, filler


def test_no_connection_reaches_the_host(run: Run) -> None:
    assert run.connections == 0


def test_no_process_survives(run: Run) -> None:
    survivors = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        text = " ".join(process.info.get("cmdline") or []) + (process.info.get("cwd") or "")
        if str(run.root) in text:
            survivors.append(process.info)
    assert not survivors, survivors


def test_grading_time_is_reported(run: Run) -> None:
    """The whole catalogue's autograding, two students at a time (printed for the record)."""
    seconds = {s: float(r["seconds"]) for s, r in run.rows.items()}
    print(f"autograde of {len(seconds)} submissions: {run.seconds:.0f} s; per submission", seconds)
    assert all(value > 0 for value in seconds.values())
