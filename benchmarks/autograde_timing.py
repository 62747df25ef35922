r"""Autograding time per submission and the scores of the fake submissions, per assignment.

What it does. For each graded assignment it builds a throw-away nbgrader course in a temporary
folder (the same helpers as ``tests/test_assignments.py``: ``tests/nbgrader_course.py``), fills
it with the fake submissions of the end-to-end test (the reference solution, the untouched
student version and one submission per common mistake of ``tests/mistakes/<topic>.py``), and
grades them with the instructor's command, ``python -m nf_course.instructor autograde``, which
runs one ``nbgrader autograde`` process per student. It prints, per assignment:

* every submission's score, the graded cells it lost (``-`` for none), whether that is exactly
  what the mistake should lose (``ok``), and its wall-clock grading time;
* a summary table: submissions, median and maximum seconds per submission, the design
  document's target (under 20 s per submission per assignment on 2 cores), and the count of
  submissions scored as expected.

The time per submission is what the instructor's tool measures around one ``nbgrader
autograde --student`` process: Python start-up, nbgrader's gradebook updates, the kernel's
start and the execution of the whole notebook. Run it on an otherwise idle machine: other
programs stretch wall-clock times.

Run::

    .venv/bin/python benchmarks/autograde_timing.py --help
    .venv/bin/python benchmarks/autograde_timing.py                       # all assignments
    .venv/bin/python benchmarks/autograde_timing.py --assignments 03_planar_flows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

import nbgrader_course as course  # noqa: E402  (the grading tests' helpers, in tests/)

TARGET_SECONDS = 20.0


def grade_assignment(root: Path, assignment: str, timeout: float) -> list[dict[str, object]]:
    """Submit the fake submissions of ``assignment`` in a course at ``root`` and grade them."""
    course.make_course(root, [assignment])
    course.submit_fake_submissions(root, assignment)
    generated = course.nbgrader(root, "generate_assignment", assignment, "--force")
    if generated.returncode != 0:
        raise SystemExit(f"generate_assignment {assignment} failed:\n{generated.stderr}")
    graded = course.instructor(root, "autograde", assignment, "--timeout", str(timeout))
    if graded.returncode != 0:
        raise SystemExit(f"autograde {assignment} failed:\n{graded.stdout}{graded.stderr}")
    status = json.loads((root / "grading" / "autograde_status.json").read_text())[assignment]
    maximum = course.max_scores(root, assignment)
    rows = []
    for student, expected in course.expected_losses(assignment).items():
        expected = dict(maximum) if expected is None else expected
        outcome = status[student]
        graded_ok = outcome["status"] == "graded"
        scores = course.cell_scores(root, assignment, student) if graded_ok else {}
        lost = {
            cell: points - scores.get(cell, 0.0)
            for cell, points in maximum.items()
            if scores.get(cell, 0.0) != points
        }
        rows.append(
            {
                "student": student,
                "score": sum(scores.values()),
                "max": sum(maximum.values()),
                "lost": lost,
                "as_expected": lost == expected,
                "seconds": float(outcome["seconds"]),
                "status": outcome["status"],
            }
        )
    return rows


def print_submissions(assignment: str, rows: list[dict[str, object]]) -> None:
    """One line per fake submission of ``assignment``."""
    print(f"\n{assignment}")
    print(f"  {'submission':<32} {'score':>9} {'seconds':>7} {'ok':>3}  lost cells")
    for r in rows:
        lost = ", ".join(f"{cell} (-{points:g})" for cell, points in r["lost"].items()) or "-"
        score = f"{r['score']:g}/{r['max']:g}"
        ok = "ok" if r["as_expected"] else "NO"
        print(f"  {r['student']:<32} {score:>9} {r['seconds']:>7.1f} {ok:>3}  {lost}")


def main() -> None:
    names = course.assignments()
    parser = argparse.ArgumentParser(
        description="Autograding time per submission and the fake submissions' scores."
    )
    parser.add_argument(
        "--assignments", nargs="+", choices=names, default=names, help="assignments to grade"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="outer time limit per submission (s)"
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="nf_course_autograde_") as folder:
        for assignment in args.assignments:
            rows = grade_assignment(Path(folder) / assignment, assignment, args.timeout)
            print_submissions(assignment, rows)
            seconds = [r["seconds"] for r in rows]
            summary.append(
                (
                    assignment,
                    len(rows),
                    statistics.median(seconds),
                    max(seconds),
                    sum(r["as_expected"] for r in rows),
                )
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print(f"\n{'assignment':<26} {'subs':>4} {'median s':>8} {'max s':>6} {'< 20 s':>6} {'ok':>5}")
    for assignment, count, median, longest, ok in summary:
        met = "yes" if longest < TARGET_SECONDS else "no"
        print(
            f"{assignment:<26} {count:>4} {median:>8.1f} {longest:>6.1f} {met:>6} {ok:>2}/{count}"
        )


if __name__ == "__main__":
    main()
