"""The hub tests' shared hub: set up, started and given assignment 01 once per session.

Run as root (``make check-hub``): the hub creates OS accounts. The course environment comes
from ``make hub-install``; everything else lives in a temporary folder removed at the end,
with the test's accounts.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # nbgrader_course

from hubtest import ENVIRONMENT, PREFIX, CourseHub, remove_leftover_accounts

ASSIGNMENT = "01_change_of_variables"
STUDENTS = [PREFIX + name for name in ("alice", "bob", "carol")]
TIMINGS: list[tuple[str, float]] = []


@contextmanager
def timed(step: str) -> Iterator[None]:
    """Record how long ``step`` took (printed at the end of the session)."""
    started = time.monotonic()
    yield
    TIMINGS.append((step, time.monotonic() - started))


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("course hub: seconds per step")
        for step, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f}  {step}")


@pytest.fixture(scope="session")
def course_hub() -> Iterator[CourseHub]:
    if os.geteuid() != 0:
        raise PermissionError("the hub tests create OS accounts: run them as root")
    if not (ENVIRONMENT / "bin" / "jupyterhub-singleuser").is_file():
        raise FileNotFoundError(f"no course environment at {ENVIRONMENT}: `make hub-install`")
    hub = CourseHub.create(STUDENTS)
    remove_leftover_accounts(hub.accounts())
    try:
        with timed("set-up: accounts from the roster, course root, exchange, book mirror"):
            hub.cli("setup", "--no-install")
        with timed("hub start"):
            hub.cli("start")
        with timed(f"instructor releases {ASSIGNMENT}"):
            hub.cli("release", ASSIGNMENT)
        yield hub
    finally:
        left = hub.close()
    assert not left, f"processes left behind by the hub: {left}"
