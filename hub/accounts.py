"""OS accounts of the course hub: the roster CSV read and checked, accounts made all or nothing.

A roster is nbgrader's student CSV (header ``id,first_name,last_name,email``, as
``nbgrader db student import`` reads it). Every problem is found before anything is created:
a bad line, a duplicate id or an account that already exists is named with its line number, and
no account is made. If ``useradd`` still fails half-way, the accounts made so far are removed.
Tests: ``tests_hub/test_accounts.py``.
"""

from __future__ import annotations

import csv
import grp
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hub.settings import ACCOUNT_NAME

COLUMNS = ("id", "first_name", "last_name", "email")


class RosterError(ValueError):
    """The roster cannot be used as it is; the message names the file and the line."""


@dataclass(frozen=True)
class Student:
    """One roster row; ``line`` is its line number in the file (the header is line 1)."""

    id: str
    first_name: str
    last_name: str
    email: str
    line: int


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def read_roster(path: Path) -> list[Student]:
    """The students of the roster at ``path``, none of whom may have an account yet."""
    students = parse_roster(path)
    for student in students:
        if account_exists(student.id):
            raise RosterError(
                f"{path}, line {student.line}: an account named {student.id!r} already exists"
            )
    return students


def parse_roster(path: Path) -> list[Student]:
    """The students of the roster at ``path``, after checking every line's format and id."""
    if not path.is_file():
        raise RosterError(f"no roster at {path} (header: {','.join(COLUMNS)})")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or [cell.strip() for cell in rows[0]] != list(COLUMNS):
        raise RosterError(f"{path}, line 1: the header must be {','.join(COLUMNS)}")
    students: list[Student] = []
    first_line: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}, line {number}"
        if len(row) != len(COLUMNS):
            raise RosterError(f"{where}: {len(row)} fields, expected {len(COLUMNS)}: {row}")
        student = Student(*(cell.strip() for cell in row), line=number)
        if not ACCOUNT_NAME.match(student.id):
            raise RosterError(
                f"{where}: {student.id!r} is not a valid account name (lower-case letters, "
                "digits, _ and -, starting with a letter or _, at most 32 characters)"
            )
        if student.id in first_line:
            raise RosterError(
                f"{where}: {student.id!r} is a duplicate of line {first_line[student.id]}"
            )
        first_line[student.id] = number
        students.append(student)
    if not students:
        raise RosterError(f"{path}: no students")
    return students


def create_account(name: str, home: Path, comment: str = "") -> None:
    """``useradd`` one account (and its group) with the private home ``home`` (mode 700)."""
    home.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "useradd",
            "--create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            "--user-group",
            "--comment",
            comment,
            name,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    os.chmod(home, 0o700)


def remove_account(name: str) -> None:
    """``userdel --remove``: the account, its group and its home."""
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
    try:
        grp.getgrnam(name)
    except KeyError:
        return
    subprocess.run(["groupdel", name], check=False, capture_output=True)


def create_students(students: list[Student], homes: Path) -> None:
    """Create every student's account, or none (rolled back on the first failure)."""
    made: list[str] = []
    try:
        for student in students:
            comment = f"{student.first_name} {student.last_name}".strip()
            create_account(student.id, homes / student.id, comment)
            made.append(student.id)
    except subprocess.CalledProcessError as error:
        for name in made:
            remove_account(name)
        raise RosterError(
            f"useradd {student.id} (line {student.line}) failed: {error.stderr.strip()}; "
            f"the {len(made)} accounts made before it were removed"
        ) from error


def ensure_account(name: str, home: Path, comment: str) -> None:
    """Create the account ``name`` with the home ``home`` unless it exists (staff accounts)."""
    if not account_exists(name):
        create_account(name, home, comment)
