"""Rosters: every bad line, duplicate or existing account is named, and nothing is made half-way.

Runs as root: the last tests create (and remove) real OS accounts named ``nfhub-r*``.
"""

from __future__ import annotations

import pytest
from hubtest import remove_leftover_accounts

from hub import accounts

HEADER = "id,first_name,last_name,email\n"
NAMES = ["nfhub-r1", "nfhub-r2", "nfhub-r3"]


@pytest.fixture
def roster(tmp_path):
    def write(text: str):
        path = tmp_path / "roster.csv"
        path.write_text(text)
        return path

    remove_leftover_accounts(NAMES)
    yield write
    remove_leftover_accounts(NAMES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,email\nann,a@x\n", "line 1: the header must be id,first_name,last_name,email"),
        (HEADER + "nfhub-r1,A,B,a@x\nnfhub-r2,B,b@x\n", "line 3: 3 fields, expected 4"),
        (HEADER + "nfhub-r1,A,B,a@x\nAnn Lee,A,L,l@x\n", "line 3: 'Ann Lee' is not a valid"),
        (
            HEADER + "nfhub-r1,A,B,a@x\nnfhub-r2,C,D,c@x\nnfhub-r1,E,F,e@x\n",
            "line 4: 'nfhub-r1' is a duplicate of line 2",
        ),
        (
            HEADER + "nfhub-r1,A,B,a@x\nroot,C,D,c@x\n",
            "line 3: an account named 'root' already exists",
        ),
        (HEADER, "no students"),
    ],
)
def test_a_bad_roster_is_refused_with_its_line_and_nothing_is_created(roster, text, message):
    path = roster(text)
    with pytest.raises(accounts.RosterError, match=message):
        accounts.create_students(accounts.read_roster(path), path.parent / "homes")
    assert not any(accounts.account_exists(name) for name in NAMES)


def test_a_roster_makes_private_homes(roster, tmp_path):
    path = roster(HEADER + "nfhub-r1,Ann,Lee,a@x\n\nnfhub-r2,Bo,Ng,b@x\n")
    students = accounts.read_roster(path)
    assert [(s.id, s.line) for s in students] == [("nfhub-r1", 2), ("nfhub-r2", 4)]
    accounts.create_students(students, tmp_path / "homes")
    for name in ("nfhub-r1", "nfhub-r2"):
        home = tmp_path / "homes" / name
        assert accounts.account_exists(name)
        assert home.stat().st_mode & 0o777 == 0o700
    with pytest.raises(accounts.RosterError, match="line 2: an account named 'nfhub-r1'"):
        accounts.read_roster(path)  # the same roster twice: every name exists now


def test_a_failure_half_way_removes_the_accounts_already_made(roster, tmp_path):
    path = roster(HEADER + "nfhub-r1,A,B,a@x\nnfhub-r2,C,D,c@x\nnfhub-r3,E,F,e@x\n")
    students = accounts.read_roster(path)
    # Another process takes the third name between the check and useradd.
    accounts.create_account("nfhub-r3", tmp_path / "elsewhere")
    with pytest.raises(accounts.RosterError, match=r"useradd nfhub-r3 \(line 4\) failed.*2 acc"):
        accounts.create_students(students, tmp_path / "homes")
    assert not accounts.account_exists("nfhub-r1") and not accounts.account_exists("nfhub-r2")
