r"""Autograding time per submission with and without the grading sandbox, on the same submissions.

What it does. It builds two throw-away nbgrader courses of one assignment (the helpers of
``tests/test_assignments.py``: ``tests/nbgrader_course.py``) and submits the same notebooks to
both: the reference solution and the first ``--mistakes`` submissions of the assignment's
common-mistake catalogue (``tests/mistakes/<topic>.py``). Then it grades them student by student
with the instructor's command, ``python -m nf_course.instructor autograde --student S``, once
in the sandbox (``nf_course.sandbox``, the default) and once with ``--no-sandbox``, alternating
which goes first from one student to the next so that a change of the machine's load touches
both alike. It prints one line per submission (seconds in each mode, the scores, which must be
equal) and the median and mean seconds per submission of each mode with their difference.

The seconds are what the instructor's tool measures around one ``nbgrader autograde
--student`` process: Python start-up, the gradebook, the kernel's start (in the sandbox: bwrap,
the copy of the submission's files) and the execution of the whole notebook. The sandbox also
sets ``OMP_NUM_THREADS=1`` for the kernel, which unconfined torch does not; on a busy machine
that alone can make the sandboxed grading faster. So the script then isolates the sandbox's own
cost: ``--starts`` times, alternating, it starts a kernel (sandboxed, and a plain
``AsyncKernelManager``), waits until it answers, runs ``import torch`` and shuts it down, and
prints the median seconds of each. Run it on an otherwise idle machine.

Run::

    .venv/bin/python benchmarks/sandbox_timing.py --help
    .venv/bin/python benchmarks/sandbox_timing.py --assignment 01_change_of_variables --mistakes 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))

import nbgrader_course as course  # noqa: E402  (the grading tests' helpers, in tests/)

MODES = {"sandbox": (), "no sandbox": ("--no-sandbox",)}


async def kernel_round_trip(manager_class: type) -> float:
    """Seconds to start a kernel, get its answer, ``import torch`` in it and shut it down."""
    started = time.perf_counter()
    manager = manager_class(kernel_name="python3")
    await manager.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive("import torch", timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        await manager.shutdown_kernel()
    return time.perf_counter() - started


def kernel_starts(count: int) -> dict[str, list[float]]:
    """``count`` round trips of each kind, alternating."""
    from jupyter_client.manager import AsyncKernelManager

    from nf_course.sandbox import SandboxedKernelManager

    kinds = {"sandbox": SandboxedKernelManager, "no sandbox": AsyncKernelManager}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for index in range(count):
        for kind in list(kinds) if index % 2 == 0 else list(reversed(kinds)):
            times[kind].append(asyncio.run(kernel_round_trip(kinds[kind])))
    return times


def prepare(root: Path, assignment: str, mistakes: int) -> list[str]:
    """A course at ``root`` with the reference and the first ``mistakes`` mistakes submitted."""
    course.make_course(root, [assignment])
    generated = course.instructor(root, "generate", assignment)
    if generated.returncode != 0:
        raise SystemExit(f"generate {assignment} failed:\n{generated.stdout}{generated.stderr}")
    released = course.student_notebooks_from(course.REPOSITORY, assignment)
    solutions = course.reference_solutions(root, assignment)
    course.submit(root, assignment, "reference", course.fill_solutions(released, solutions))
    students = ["reference"]
    for mistake in course.mistakes(assignment)[:mistakes]:
        filled = course.fill_solutions(released, solutions, mistake)
        course.submit(root, assignment, mistake.name, filled)
        students.append(mistake.name)
    return students


def grade(root: Path, assignment: str, student: str, options: tuple[str, ...], timeout: float):
    """Grade one student with the instructor's tool; return (seconds, score)."""
    graded = course.instructor(
        root, "autograde", assignment, "--student", student, "--timeout", str(timeout), *options
    )
    if graded.returncode != 0:
        raise SystemExit(f"autograde {student} failed:\n{graded.stdout}{graded.stderr}")
    status = json.loads((root / "grading" / "autograde_status.json").read_text())
    outcome = status[assignment][student]
    if outcome["status"] != "graded":
        return float(outcome["seconds"]), float("nan")
    return float(outcome["seconds"]), sum(course.cell_scores(root, assignment, student).values())


def main() -> None:
    names = course.assignments()
    parser = argparse.ArgumentParser(
        description="Autograding seconds per submission with and without the sandbox."
    )
    parser.add_argument("--assignment", choices=names, default="01_change_of_variables")
    parser.add_argument(
        "--mistakes", type=int, default=5, help="submissions of the mistake catalogue to add"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="outer time limit per submission (s)"
    )
    parser.add_argument(
        "--starts", type=int, default=10, help="kernel round trips of each kind to time"
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="nf_course_sandbox_timing_") as folder:
        roots = {mode: Path(folder) / mode.replace(" ", "_") for mode in MODES}
        students = [prepare(root, args.assignment, args.mistakes) for root in roots.values()]
        students = students[0]  # the same in both courses
        print(f"\n{args.assignment}: {len(students)} submissions, each graded in both modes")
        print(f"  {'submission':<34} {'sandbox s':>9} {'no sandbox s':>12} {'scores':>11}")
        for index, student in enumerate(students):
            order = list(MODES) if index % 2 == 0 else list(reversed(MODES))
            result = {}
            for mode in order:
                result[mode] = grade(
                    roots[mode], args.assignment, student, MODES[mode], args.timeout
                )
                seconds[mode].append(result[mode][0])
            scores = f"{result['sandbox'][1]:g} / {result['no sandbox'][1]:g}"
            same = "" if result["sandbox"][1] == result["no sandbox"][1] else "  DIFFERENT"
            print(
                f"  {student:<34} {result['sandbox'][0]:>9.1f} {result['no sandbox'][0]:>12.1f}"
                f" {scores:>11}{same}",
                flush=True,
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print(f"\n{'mode':<12} {'median s':>8} {'mean s':>7}")
    for mode, values in seconds.items():
        print(f"{mode:<12} {statistics.median(values):>8.1f} {statistics.mean(values):>7.1f}")
    extra = [a - b for a, b in zip(seconds["sandbox"], seconds["no sandbox"], strict=True)]
    print(
        f"sandbox - no sandbox, per submission: median {statistics.median(extra):+.1f} s, "
        f"mean {statistics.mean(extra):+.1f} s"
    )
    times = kernel_starts(args.starts)
    print(f"\nkernel start, answer, import torch, shutdown ({args.starts} each, alternating)")
    for kind, values in times.items():
        print(f"{kind:<12} median {statistics.median(values):.2f} s")
    print(
        f"the sandbox's own cost: "
        f"{statistics.median(times['sandbox']) - statistics.median(times['no sandbox']):+.2f} s"
    )


if __name__ == "__main__":
    main()
