"""The hub's nbgrader course: its folders and permissions, and the instructor's exchange jobs.

The course root (``<state>/course``) is the grader account's home, mode 700: it holds the
course's ``nbgrader_config.py`` (the repository's, plus the exchange), ``solutions/`` copied
from the repository at each release, ``exercises/`` and the ``grading/`` workspace with the
gradebook. Students reach the course only through the exchange (``<state>/exchange``), laid out
with the permissions nbgrader documents and uses: the exchange root world-writable (with the
sticky bit), ``outbound`` 755, ``inbound`` 733 (students drop submissions, cannot list them),
``feedback`` 711. The instructor's jobs run as root with the instructor's ``nbgrader``; the course
root is given back to the grader account after each. Tests: ``tests_hub/test_round_trip.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hub import accounts, book
from hub.settings import REPOSITORY, HubSettings

# nbgrader's modes for the course's folders in the exchange (ExchangeReleaseAssignment).
EXCHANGE_MODES = {"outbound": 0o755, "inbound": 0o733, "feedback": 0o711}


class CourseError(RuntimeError):
    """An nbgrader job of the hub failed; the message holds its output."""


def exchange_config(settings: HubSettings) -> str:
    """The nbgrader settings that connect a course folder or a student to the exchange."""
    return (
        f"c.CourseDirectory.course_id = {settings.course_id!r}\n"
        f"c.Exchange.root = {str(settings.exchange)!r}\n"
        "c.Exchange.path_includes_course = False\n"
    )


def write_course_config(settings: HubSettings) -> None:
    """The course root's ``nbgrader_config.py``: the repository's, then the exchange's lines."""
    config = (REPOSITORY / "nbgrader_config.py").read_text()
    block = "\n# Added by the course hub (hub/course.py): the exchange of this hub.\n"
    (settings.course_root / "nbgrader_config.py").write_text(
        config + block + "c = get_config()  # noqa: F821\n" + exchange_config(settings)
    )


def write_student_config(settings: HubSettings) -> None:
    """The students' servers' Jupyter config folder (``JUPYTER_CONFIG_PATH``): nbgrader's
    exchange, and the git config that sends the book's launch links to the mirror."""
    folder = settings.student_config
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    path = folder / "nbgrader_config.py"
    path.write_text("c = get_config()  # noqa: F821\n" + exchange_config(settings))
    path.chmod(0o644)
    gitconfig = book.git_config_file(settings)
    gitconfig.write_text(book.git_config(settings))
    gitconfig.chmod(0o644)


def write_formgrader_config(settings: HubSettings) -> None:
    """Switch formgrader back on for the grader's server (the course environment disables it)."""
    folder = settings.course_root / ".jupyter"
    folder.mkdir(exist_ok=True)
    extension = {"nbgrader.server_extensions.formgrader": True}
    (folder / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": extension}}, indent=2) + "\n"
    )


def prepare_exchange(settings: HubSettings) -> None:
    """The exchange root (1777) and the course's folders in it, owned by root."""
    settings.exchange.mkdir(parents=True, exist_ok=True)
    settings.exchange.chmod(0o1777)
    course = settings.exchange / settings.course_id
    course.mkdir(exist_ok=True)
    course.chmod(0o755)
    for name, mode in EXCHANGE_MODES.items():
        (course / name).mkdir(exist_ok=True)
        (course / name).chmod(mode)


def give_to_grader(settings: HubSettings) -> None:
    """The course root belongs to the grader account again (formgrader writes the gradebook)."""
    subprocess.run(
        ["chown", "-R", f"{settings.grader}:{settings.grader}", str(settings.course_root)],
        check=True,
    )
    settings.course_root.chmod(0o700)


def close_repository() -> bool:
    """Take every right of other accounts on the repository's folder (it holds solutions/);
    True if its mode changed."""
    mode = REPOSITORY.stat().st_mode & 0o7777
    if mode & 0o007:
        REPOSITORY.chmod(mode & ~0o007)
    return bool(mode & 0o007)


def prepare(settings: HubSettings) -> None:
    """Close the repository to other accounts; create the hub's folders, the grader's and
    instructors' accounts, the exchange, the students' Jupyter config and the book's mirror
    (idempotent)."""
    close_repository()
    settings.state.mkdir(parents=True, exist_ok=True)
    settings.state.chmod(0o755)
    settings.hub_state.mkdir(exist_ok=True)
    settings.hub_state.chmod(0o700)
    accounts.ensure_account(settings.grader, settings.course_root, f"{settings.course_id} grader")
    for name in settings.instructors:
        accounts.ensure_account(name, settings.homes / name, f"{settings.course_id} instructor")
    write_course_config(settings)
    write_formgrader_config(settings)
    (settings.course_root / "grading").mkdir(exist_ok=True)
    give_to_grader(settings)
    prepare_exchange(settings)
    write_student_config(settings)
    book.publish_book(settings)


def nbgrader(settings: HubSettings, *args: str) -> str:
    """Run ``nbgrader ARGS`` as root in the course root, then give the root back to the grader."""
    env = {**os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    process = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=settings.course_root,
        env=env,
        capture_output=True,
        text=True,
    )
    give_to_grader(settings)
    output = process.stdout + process.stderr
    if process.returncode != 0:
        raise CourseError(f"nbgrader {' '.join(args)} failed:\n{output}")
    return output


def release(settings: HubSettings, assignment: str) -> None:
    """Copy the assignment's source from the repository, generate it, release it to students."""
    source = REPOSITORY / "solutions" / assignment
    if not source.is_dir():
        raise CourseError(f"no assignment {assignment!r} in {REPOSITORY / 'solutions'}")
    target = settings.course_root / "solutions" / assignment
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    write_course_config(settings)
    nbgrader(settings, "generate_assignment", assignment, "--force")
    nbgrader(settings, "release_assignment", assignment, "--force")


def collect(settings: HubSettings, assignment: str) -> None:
    """Copy each student's latest submission into ``grading/submitted/`` (nbgrader's rule)."""
    nbgrader(settings, "collect", assignment, "--update")


def return_feedback(settings: HubSettings, assignment: str) -> None:
    """Put the generated feedback in the exchange, where each student fetches their own."""
    nbgrader(settings, "release_feedback", assignment)


def add_students(settings: HubSettings) -> list[accounts.Student]:
    """Accounts for the roster's students (all or none), and the roster in the gradebook."""
    students = accounts.read_roster(settings.roster)
    accounts.create_students(students, settings.homes)
    try:
        nbgrader(settings, "db", "student", "import", str(settings.roster))
    except CourseError:
        for student in students:
            accounts.remove_account(student.id)
        raise
    return students
