"""The course hub's settings: ``hub/course_hub.toml`` read, checked and turned into paths.

Every other module of ``hub/`` (and ``hub/jupyterhub_config.py``) takes its values from
:class:`HubSettings`; the tests point ``NF_COURSE_HUB_CONFIG`` at a file of their own.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPOSITORY / "hub" / "course_hub.toml"
CONFIG_VARIABLE = "NF_COURSE_HUB_CONFIG"
AUTHENTICATORS = ("native", "test")
# Unix account names this hub creates or accepts: what `useradd` takes on every distribution.
ACCOUNT_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
COURSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SIZE = re.compile(r"^(\d+)([KMGT]?)$")


class HubConfigError(ValueError):
    """The configuration file holds a value the hub cannot use; the message names it."""


@dataclass(frozen=True)
class HubSettings:
    """The values of ``course_hub.toml``, checked, with the paths derived from them."""

    config_file: Path
    course_id: str
    instructors: tuple[str, ...]
    roster: Path
    ip: str
    port: int
    internal_port: int
    public_url: str
    authenticator: str
    test_passwords: Path | None
    state: Path
    environment: Path
    homes: Path
    memory_per_process: int  # bytes
    processes_per_student: int
    start_timeout: int

    # ------------------------------------------------------------------ derived paths and names
    @property
    def hub_state(self) -> Path:
        """Root-only: the hub's database, cookie secret, pid file and log."""
        return self.state / "hub"

    @property
    def course_root(self) -> Path:
        """nbgrader's course root for the hub, owned by the grader account, closed to others."""
        return self.state / "course"

    @property
    def exchange(self) -> Path:
        """nbgrader's exchange (world-writable with the sticky bit)."""
        return self.state / "exchange"

    @property
    def student_config(self) -> Path:
        """The Jupyter config folder of the students' servers (nbgrader's exchange, course id)."""
        return self.state / "jupyter"

    @property
    def book_mirror(self) -> Path:
        """A bare git repository holding only the book's chapters, for nbgitpuller."""
        return self.state / "book.git"

    @property
    def grader(self) -> str:
        """The OS account that runs formgrader and owns the course root."""
        return f"grader-{self.course_id}".lower()[:32]

    @property
    def instructors_group(self) -> str:
        """The hub group whose role opens formgrader (nbgrader's naming)."""
        return f"formgrade-{self.course_id}"

    @property
    def url(self) -> str:
        """The hub's address for people and for the book's launch buttons."""
        return self.public_url or f"http://{self.ip}:{self.port}"

    @property
    def formgrader_port(self) -> int:
        return self.internal_port + 2

    def python(self) -> Path:
        """The course environment's interpreter (the hub, the servers and formgrader use it)."""
        return self.environment / "bin" / "python"


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _size(text: str, where: str) -> int:
    match = SIZE.match(str(text).strip().upper())
    if not match:
        raise HubConfigError(f"{where} = {text!r}: write a size such as 4G or 512M")
    number, unit = match.groups()
    return int(number) * 1024 ** ("KMGT".index(unit) + 1) if unit else int(number)


def _table(data: dict, name: str, where: Path) -> dict:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise HubConfigError(f"{where}: [{name}] must be a table")
    return table


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` (an address or ``localhost``) only accepts connections from this machine."""
    if ip == "localhost":
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def load(path: str | os.PathLike | None = None) -> HubSettings:
    """Read and check the hub's configuration file.

    ``path`` defaults to ``$NF_COURSE_HUB_CONFIG``, else ``hub/course_hub.toml``; relative paths
    inside it are taken relative to the repository. Raises :class:`HubConfigError` naming the
    first bad value.
    """
    config_file = Path(path or os.environ.get(CONFIG_VARIABLE) or DEFAULT_CONFIG).resolve()
    if not config_file.is_file():
        raise HubConfigError(f"no hub configuration file at {config_file}")
    try:
        data = tomllib.loads(config_file.read_text())
    except tomllib.TOMLDecodeError as error:
        raise HubConfigError(f"{config_file}: not valid TOML: {error}") from error
    hub = _table(data, "hub", config_file)
    paths = _table(data, "paths", config_file)
    limits = _table(data, "limits", config_file)
    passwords = hub.get("test_passwords")
    settings = HubSettings(
        config_file=config_file,
        course_id=str(data.get("course_id", "")),
        instructors=tuple(data.get("instructors", ())),
        roster=_resolve(str(data.get("roster", "hub/roster.csv")), REPOSITORY),
        ip=str(hub.get("ip", "127.0.0.1")),
        port=int(hub.get("port", 8000)),
        internal_port=int(hub.get("internal_port", 8081)),
        public_url=str(hub.get("public_url", "")).rstrip("/"),
        authenticator=str(hub.get("authenticator", "native")),
        test_passwords=_resolve(str(passwords), REPOSITORY) if passwords else None,
        state=_resolve(str(paths.get("state", "/srv/nf-course")), REPOSITORY),
        environment=_resolve(str(paths.get("environment", "/opt/nf-course/venv")), REPOSITORY),
        homes=_resolve(str(paths.get("homes", "/home")), REPOSITORY),
        memory_per_process=_size(
            limits.get("memory_per_process", "4G"), "limits.memory_per_process"
        ),
        processes_per_student=int(limits.get("processes_per_student", 512)),
        start_timeout=int(limits.get("start_timeout", 120)),
    )
    check(settings)
    return settings


def check(settings: HubSettings) -> None:
    """Raise :class:`HubConfigError` on the first value the hub cannot run with."""
    where = settings.config_file
    if not COURSE_ID.match(settings.course_id):
        raise HubConfigError(
            f"{where}: course_id = {settings.course_id!r}: use letters, digits, _-"
        )
    for name in settings.instructors:
        if not ACCOUNT_NAME.match(name):
            raise HubConfigError(f"{where}: instructor {name!r} is not a valid account name")
    for name, port in [("port", settings.port), ("internal_port", settings.internal_port)]:
        if not 0 < port < 65534:
            raise HubConfigError(f"{where}: hub.{name} = {port} is not a port number")
    if settings.authenticator not in AUTHENTICATORS:
        raise HubConfigError(
            f"{where}: hub.authenticator = {settings.authenticator!r}: choose one of "
            + ", ".join(AUTHENTICATORS)
        )
    if settings.authenticator == "test":
        if not is_loopback(settings.ip):
            raise HubConfigError(
                f"{where}: the test authenticator only runs on a loopback address, and "
                f"hub.ip = {settings.ip!r} is not one: it has a password file, not real accounts"
            )
        if settings.test_passwords is None:
            raise HubConfigError(f"{where}: the test authenticator needs hub.test_passwords")
    if settings.processes_per_student < 16:
        raise HubConfigError(f"{where}: limits.processes_per_student must be at least 16")
