"""Instructor commands for the graded assignments: one command per job, around nbgrader.

Run from anywhere inside the repository (the course root is the folder of
``nbgrader_config.py``; ``--root`` picks another one)::

    python -m nf_course.instructor generate [ASSIGNMENT ...]   # solutions/ -> exercises/
    python -m nf_course.instructor autograde ASSIGNMENT [--student ID ...] [--timeout S]
                                               [--jobs N] [--no-sandbox]
    python -m nf_course.instructor feedback ASSIGNMENT          # HTML, hidden tests removed
    python -m nf_course.instructor grades [--output FILE]       # one CSV row per submission

Submissions are read from ``grading/submitted/<student>/<assignment>/*.ipynb`` (nbgrader's
layout, filled by ``nbgrader collect`` or ``nbgrader zip_collect``). ``autograde`` runs one
``nbgrader autograde`` process per student under an outer time limit: a submission that hangs,
or ignores the interrupt nbgrader sends after the per-cell timeout, costs that student a zero
with the reason recorded in ``grading/autograde_status.json``, and the others are still graded.
``--jobs N`` grades N students at a time, each in its own process under its own limit. Every
notebook's kernel runs in a bubblewrap sandbox (``nf_course.sandbox``; README, "Grading in a
sandbox"); ``autograde`` stops before grading anyone if this machine cannot make one, and
``--no-sandbox`` is the explicit way to grade without it (student code then runs with your
rights, in the course folder).
``feedback`` goes through the ``HideHiddenTests`` preprocessor of ``nbgrader_config.py``, so
students never see the source of hidden tests nor the tracebacks that would quote it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from nf_course.tamper import clear_flags, read_flags

__all__ = [
    "autograde",
    "export_grades",
    "generate",
    "generate_feedback",
    "main",
]

WORKSPACE = "grading"
STATUS_FILE = "autograde_status.json"
TAMPER_FOLDER = "tamper"  # nf_course.tamper's reports (see nbgrader_config.py)
NO_SANDBOX_WARNING = (
    "WARNING: --no-sandbox: the students' code runs with your rights, in the course folder; it "
    "can read the solutions and the gradebook, other submissions, and change the course."
)


def _course_root(root: str | None) -> Path:
    if root is not None:
        path = Path(root).resolve()
        if not (path / "nbgrader_config.py").is_file():
            raise SystemExit(f"error: no nbgrader_config.py in {path}")
        return path
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "nbgrader_config.py").is_file():
            return folder
    raise SystemExit("error: no nbgrader_config.py here or above; pass --root")


def _nbgrader(
    root: Path, *args: str, timeout: float | None = None, sandbox: bool = True
) -> tuple[int, str]:
    """Run ``nbgrader ARGS`` in ``root``; on timeout kill it and every kernel it started.

    The interpreter's ``bin`` folder goes first on ``PATH``: nbgrader calls ``alembic`` from it.
    ``sandbox=False`` sets ``NF_COURSE_SANDBOX=0``, which ``nbgrader_config.py`` reads. Its
    ``TMPDIR`` (where each sandbox stages the submission's files) is removed afterwards, also
    after a kill.
    """
    env = {**os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["NF_COURSE_SANDBOX"] = "1" if sandbox else "0"
    with tempfile.TemporaryDirectory(prefix="nf-course-nbgrader-") as scratch:
        env["TMPDIR"] = scratch
        process = subprocess.Popen(
            [sys.executable, "-m", "nbgrader", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(process.pid)
            output, _ = process.communicate()
            return -1, output
    return process.returncode, output


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (kernels run in sessions of their own)."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    family = [*parent.children(recursive=True), parent]
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def generate(root: Path, assignments: list[str]) -> None:
    """``nbgrader generate_assignment`` for each assignment (all of ``solutions/`` if none)."""
    names = assignments or sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir())
    for name in names:
        code, output = _nbgrader(root, "generate_assignment", name, "--force")
        if code != 0:
            raise SystemExit(f"generate_assignment {name} failed:\n{output}")
        print(f"generated exercises/{name}")


def _failure_reason(code: int, output: str, timeout: float) -> str:
    """Why ``nbgrader autograde`` did not grade a student, in the instructor's words."""
    if code == -1:
        return f"grading did not finish within {timeout:g} s (the notebook hangs); scored 0"
    if "CellTimeoutError" in output:
        return (
            "a cell ran past its time limit and the kernel did not answer the interrupt "
            "(a loop that ignores KeyboardInterrupt?); scored 0"
        )
    errors = [line for line in output.splitlines() if "| ERROR]" in line]
    detail = errors[0].split("]", 1)[1].strip() if errors else f"exit status {code}"
    return f"nbgrader autograde failed: {detail}; scored 0"


def _grade_student(
    root: Path, assignment: str, student: str, timeout: float, sandbox: bool
) -> dict[str, object]:
    """One ``nbgrader autograde --student`` process under the outer limit; its log and outcome,
    with the flags :mod:`nf_course.tamper` recorded ("" if none)."""
    clear_flags(root / WORKSPACE / TAMPER_FOLDER, assignment, student)
    started = time.monotonic()
    code, output = _nbgrader(
        root,
        "autograde",
        assignment,
        "--student",
        student,
        "--force",
        timeout=timeout,
        sandbox=sandbox,
    )
    seconds = round(time.monotonic() - started, 2)
    (root / WORKSPACE / "logs" / assignment / f"{student}.log").write_text(output)
    graded = root / WORKSPACE / "autograded" / student / assignment
    if code == 0 and graded.is_dir():
        outcome = {"status": "graded", "reason": "", "seconds": seconds}
    else:
        # A killed run leaves a half-made copy: remove it, as nbgrader does after an error,
        # so that no feedback is generated from it.
        shutil.rmtree(graded, ignore_errors=True)
        outcome = {
            "status": "failed",
            "reason": _failure_reason(code, output, timeout),
            "seconds": seconds,
        }
    outcome["flag"] = read_flags(root / WORKSPACE / TAMPER_FOLDER, assignment, student)
    flagged = f" FLAGGED for review: {outcome['flag']}" if outcome["flag"] else ""
    print(
        f"{assignment} {student}: {outcome['status']} in {seconds:.1f} s "
        f"{outcome['reason']}{flagged}"
    )
    return outcome


def autograde(
    root: Path,
    assignment: str,
    students: list[str],
    timeout: float,
    *,
    jobs: int = 1,
    sandbox: bool = True,
) -> dict[str, dict[str, object]]:
    """Autograde ``assignment`` student by student, ``jobs`` at a time; record each outcome and
    return them.

    Returns ``{student: {"status": "graded" | "failed", "reason": str, "seconds": float,
    "flag": str}}`` (``flag``: what :mod:`nf_course.tamper` flagged, "" if nothing); the same
    goes into ``grading/autograde_status.json`` (merged with earlier runs). With
    ``sandbox`` (the default) it first checks that this machine can start a sandbox, and stops
    with the instructions to fix it if not.
    """
    submitted = root / WORKSPACE / "submitted"
    everyone = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}") if p.is_dir())
    unknown = sorted(set(students) - set(everyone))
    if unknown:
        raise SystemExit(f"error: no submission of {assignment} for {', '.join(unknown)}")
    if jobs < 1:
        raise SystemExit(f"error: --jobs must be at least 1, not {jobs}")
    if sandbox:
        from nf_course.sandbox import SandboxUnavailable, check_sandbox

        try:
            check_sandbox()
        except SandboxUnavailable as error:
            raise SystemExit(f"error: {error}") from None
    else:
        print(NO_SANDBOX_WARNING, file=sys.stderr)
    (root / WORKSPACE / "logs" / assignment).mkdir(parents=True, exist_ok=True)
    queue = students or everyone
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(
            lambda student: _grade_student(root, assignment, student, timeout, sandbox), queue
        )
        outcomes = dict(zip(queue, results, strict=True))
    status_path = root / WORKSPACE / STATUS_FILE
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    status.setdefault(assignment, {}).update(outcomes)
    status_path.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    return outcomes


def generate_feedback(root: Path, assignment: str) -> None:
    """``nbgrader generate_feedback`` for every autograded submission of ``assignment``."""
    code, output = _nbgrader(root, "generate_feedback", assignment, "--force")
    if code != 0:
        raise SystemExit(f"generate_feedback {assignment} failed:\n{output}")
    print(f"feedback in {WORKSPACE}/feedback/<student>/{assignment}/")


def export_grades(root: Path, output: Path) -> list[dict[str, object]]:
    """Write one CSV row per (assignment, student): score, max score, status, reason, seconds
    and the tampering flag (see :mod:`nf_course.tamper`; empty if none).

    Scores come from the gradebook; a submission whose autograding failed scores 0 with the
    recorded reason.
    """
    from nbgrader.api import Gradebook, MissingEntry

    status_path = root / WORKSPACE / STATUS_FILE
    status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    rows: list[dict[str, object]] = []
    with Gradebook("sqlite:///" + str(root / WORKSPACE / "gradebook.db")) as gradebook:
        for assignment in gradebook.assignments:
            for student in sorted(status.get(assignment.name, {})):
                outcome = status[assignment.name][student]
                score = 0.0
                if outcome["status"] == "graded":
                    try:
                        submission = gradebook.find_submission(assignment.name, student)
                        score = submission.score
                    except MissingEntry:
                        outcome = {**outcome, "status": "failed", "reason": "not in gradebook"}
                rows.append(
                    {
                        "assignment": assignment.name,
                        "student": student,
                        "score": score,
                        "max_score": assignment.max_score,
                        "status": outcome["status"],
                        "reason": outcome["reason"],
                        "seconds": outcome["seconds"],
                        "flag": outcome.get("flag", ""),
                    }
                )
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        fields = [
            "assignment",
            "student",
            "score",
            "max_score",
            "status",
            "reason",
            "seconds",
            "flag",
        ]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows written to {output}")
    return rows


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m nf_course.instructor", description=__doc__)
    parser.add_argument("--root", help="course root (default: the folder of nbgrader_config.py)")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("generate", help="write exercises/ from solutions/")
    command.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    command = commands.add_parser("autograde", help="grade submissions, student by student")
    command.add_argument("assignment")
    command.add_argument("--student", action="append", default=[], help="only these students")
    command.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed per student (default 300)"
    )
    command.add_argument(
        "--jobs", type=int, default=1, help="students graded at the same time (default 1)"
    )
    command.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        help="run the students' code unconfined, with your rights (not recommended)",
    )
    command = commands.add_parser("feedback", help="HTML feedback without hidden tests")
    command.add_argument("assignment")
    command = commands.add_parser("grades", help="export the grades to CSV")
    command.add_argument("--output", help=f"CSV file (default {WORKSPACE}/grades.csv)")
    args = parser.parse_args(argv)
    root = _course_root(args.root)
    if args.command == "generate":
        generate(root, args.assignments)
    elif args.command == "autograde":
        autograde(
            root,
            args.assignment,
            args.student,
            args.timeout,
            jobs=args.jobs,
            sandbox=args.sandbox,
        )
    elif args.command == "feedback":
        generate_feedback(root, args.assignment)
    else:
        export_grades(root, Path(args.output) if args.output else root / WORKSPACE / "grades.csv")


if __name__ == "__main__":
    main()
