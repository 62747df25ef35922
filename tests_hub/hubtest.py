"""Helpers of the hub tests: a throw-away course hub on loopback, and students who use it.

:class:`CourseHub` writes its own ``course_hub.toml`` (test authenticator, free loopback ports,
every folder under one temporary directory, accounts named ``nfhub-*``), runs the same
``python -m hub`` commands as an instructor, and removes its accounts and folders when closed.
:class:`Student` speaks to the hub and to the student's server over HTTP, as JupyterLab does:
the login form, the spawn page, the contents API and nbgrader's Assignments endpoints.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from hub import accounts, settings  # noqa: E402

COURSE = "nfhub-test"
PREFIX = "nfhub-"
ENVIRONMENT = Path(os.environ.get("NF_COURSE_HUB_ENV", "/opt/nf-course/venv"))


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + size >= 65000:
            continue
        try:
            for port in range(first, first + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError("no block of free loopback ports")


def hub_processes(names: list[str]) -> list[str]:
    """``pid user command`` of every process run by one of the accounts ``names``."""
    output = subprocess.run(
        ["ps", "-eo", "pid=,user:32=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in output.splitlines() if line.split()[1:2] in ([n] for n in names)]


@dataclass
class CourseHub:
    """A course hub under ``root``: its config file, users and passwords."""

    root: Path
    students: list[str]
    instructor: str
    passwords: dict[str, str]
    settings: settings.HubSettings = field(init=False)

    @classmethod
    def create(cls, students: list[str], ip: str = "127.0.0.1") -> CourseHub:
        root = Path(tempfile.mkdtemp(prefix="nf-hub-test-", dir="/tmp"))
        root.chmod(0o755)  # students reach the exchange and their homes through it
        instructor = PREFIX + "teacher"
        users = [*students, instructor]
        passwords = {user: secrets.token_urlsafe(12) for user in users}
        hub = cls(root, students, instructor, passwords)
        (root / "passwords.json").write_text(json.dumps(passwords))
        (root / "passwords.json").chmod(0o600)
        rows = [f"{name},{name.title()},Student,{name}@example.org" for name in students]
        (root / "roster.csv").write_text("id,first_name,last_name,email\n" + "\n".join(rows))
        port = free_port_block(4)
        (root / "course_hub.toml").write_text(
            f'course_id = "{COURSE}"\ninstructors = ["{instructor}"]\n'
            f'roster = "{root / "roster.csv"}"\n'
            f'[hub]\nip = "{ip}"\nport = {port}\ninternal_port = {port + 1}\n'
            f'authenticator = "test"\ntest_passwords = "{root / "passwords.json"}"\n'
            f'[paths]\nstate = "{root / "state"}"\nenvironment = "{ENVIRONMENT}"\n'
            f'homes = "{root / "homes"}"\n'
            '[limits]\nmemory_per_process = "3G"\nprocesses_per_student = 400\n'
        )
        if ip == "127.0.0.1":
            hub.settings = settings.load(root / "course_hub.toml")
        return hub

    @property
    def config(self) -> Path:
        return self.root / "course_hub.toml"

    @property
    def url(self) -> str:
        return self.settings.url

    def accounts(self) -> list[str]:
        return [*self.students, self.instructor, f"grader-{COURSE}"]

    def made(self, account: str) -> bool:
        """Whether ``account`` is one of this hub's (its home is in this hub's folder)."""
        try:
            return Path(pwd.getpwnam(account).pw_dir).is_relative_to(self.root)
        except KeyError:
            return False

    def cli(self, *args: str, check: bool = True, timeout: float = 900) -> str:
        """``python -m hub --config <this hub's file> ARGS``; its output."""
        process = subprocess.run(
            [sys.executable, "-m", "hub", "--config", str(self.config), *args],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = process.stdout + process.stderr
        if check and process.returncode != 0:
            raise AssertionError(f"python -m hub {' '.join(args)} failed:\n{output}")
        return output

    def instructor_tool(self, *args: str) -> str:
        """The course's own instructor command, on the hub's course root."""
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "nf_course.instructor",
                "--root",
                str(self.settings.course_root),
                *args,
            ],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = process.stdout + process.stderr
        assert process.returncode == 0, output
        return output

    def close(self) -> list[str]:
        """Stop the hub, remove the accounts and the temporary folder.

        Returns the processes of the hub's accounts that were still running after the hub
        stopped (they are killed, so that nothing is left behind either way).
        """
        left: list[str] = []
        try:
            if (self.root / "state").is_dir():
                self.cli("stop", check=False)
            left = hub_processes(self.accounts())
            for line in left:
                subprocess.run(["kill", "-9", line.split()[0]], check=False)
        finally:
            for name in self.accounts():
                if self.made(name):
                    accounts.remove_account(name)
            shutil.rmtree(self.root, ignore_errors=True)
        return left


def remove_leftover_accounts(names: list[str]) -> None:
    """Accounts of a test run that was killed before it could clean up."""
    for name in names:
        if accounts.account_exists(name):
            accounts.remove_account(name)


def as_user(user: str, code: str) -> str:
    """Run Python ``code`` as the OS account ``user`` (its groups, its home); its stdout."""
    process = subprocess.run(
        ["runuser", "-u", user, "--", str(ENVIRONMENT / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert process.returncode == 0, process.stderr
    return process.stdout.strip()


def can_read(user: str, path: Path) -> str:
    """``"denied"`` if ``user`` cannot list or read ``path``, else what it could do."""
    code = (
        f"import os\np = {str(path)!r}\n"
        "try:\n"
        "    os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)\n"
        "    print('read')\n"
        "except PermissionError:\n"
        "    print('denied')\n"
    )
    return as_user(user, code)


class Student:
    """One person in a browser-less session: logs in, starts a server, calls its APIs."""

    def __init__(self, hub: CourseHub, name: str) -> None:
        self.hub, self.name = hub, name
        self.session = requests.Session()
        self.server = f"{hub.url}/user/{name}"

    def login(self) -> requests.Response:
        """The hub's login form, with its XSRF token, as the login page posts it."""
        page = self.session.get(f"{self.hub.url}/hub/login", timeout=30)
        page.raise_for_status()
        xsrf = self.session.cookies.get("_xsrf", path="/hub/")
        return self.session.post(
            f"{self.hub.url}/hub/login",
            data={"username": self.name, "password": self.hub.passwords[self.name], "_xsrf": xsrf},
            timeout=30,
        )

    def whoami(self) -> requests.Response:
        return self.session.get(f"{self.hub.url}/hub/api/user", timeout=30)

    def start_server(self, timeout: float = 180) -> None:
        """Ask for the server (the spawn page) and wait until JupyterLab answers."""
        self.session.get(f"{self.hub.url}/hub/spawn", timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.session.get(f"{self.server}/lab", timeout=60)
            if response.status_code == 200 and response.url.startswith(f"{self.server}/lab"):
                return
            time.sleep(1)
        raise AssertionError(f"{self.name}'s server did not start within {timeout} s")

    def _xsrf(self) -> dict[str, str]:
        token = self.session.cookies.get("_xsrf", path=f"/user/{self.name}/")
        return {"X-XSRFToken": token} if token else {}

    def get(self, path: str, **params: str) -> requests.Response:
        return self.session.get(f"{self.server}/{path}", params=params, timeout=120)

    def post(self, path: str, data: dict[str, str]) -> requests.Response:
        return self.session.post(
            f"{self.server}/{path}", data=data, headers=self._xsrf(), timeout=300
        )

    def put_json(self, path: str, body: dict) -> requests.Response:
        return self.session.put(
            f"{self.server}/{path}", json=body, headers=self._xsrf(), timeout=120
        )

    # nbgrader's Assignments tab and Validate button: the same endpoints, the same arguments.
    def assignments(self) -> list[dict]:
        response = self.get("assignments", course_id=COURSE)
        response.raise_for_status()
        body = response.json()
        assert body["success"], body
        return body["value"]

    def action(self, action: str, assignment: str) -> dict:
        response = self.post(
            f"assignments/{action}", {"course_id": COURSE, "assignment_id": assignment}
        )
        response.raise_for_status()
        return response.json()

    def validate(self, path: str) -> dict:
        response = self.post("assignments/validate", {"path": path})
        response.raise_for_status()
        return response.json()

    def read_notebook(self, path: str) -> dict:
        response = self.get(f"api/contents/{path}", type="notebook", content="1")
        response.raise_for_status()
        return response.json()["content"]

    def write_notebook(self, path: str, notebook: dict) -> None:
        response = self.put_json(
            f"api/contents/{path}", {"type": "notebook", "format": "json", "content": notebook}
        )
        response.raise_for_status()
