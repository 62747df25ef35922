"""Start, stop and inspect the course hub's JupyterHub process (``make hub``, ``make hub-stop``).

The hub runs in the background as root from the course environment, in its own session, with
its log in ``<state>/hub/jupyterhub.log``; JupyterHub writes its pid to
``<state>/hub/jupyterhub.pid``. Stopping sends SIGTERM: JupyterHub stops every student's server,
the formgrader service and the proxy, then exits. Its database, the gradebook and the exchange
stay on disk, so a restart loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from hub.settings import CONFIG_VARIABLE, REPOSITORY, HubSettings

JUPYTERHUB_CONFIG = REPOSITORY / "hub" / "jupyterhub_config.py"


class HubError(RuntimeError):
    """The hub did not start or stop as asked; the message says why (with its log's end)."""


def log_file(settings: HubSettings) -> Path:
    return settings.hub_state / "jupyterhub.log"


def pid_file(settings: HubSettings) -> Path:
    return settings.hub_state / "jupyterhub.pid"


def running_pid(settings: HubSettings) -> int | None:
    """The hub's process id if it is running, else None."""
    try:
        pid = int(pid_file(settings).read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def health_url(settings: HubSettings) -> str:
    host = "127.0.0.1" if settings.ip in ("", "0.0.0.0") else settings.ip
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}/hub/health"


def healthy(settings: HubSettings) -> bool:
    try:
        with urllib.request.urlopen(health_url(settings), timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(settings: HubSettings, lines: int = 30) -> str:
    path = log_file(settings)
    return "\n".join(path.read_text().splitlines()[-lines:]) if path.is_file() else "(no log)"


def start(settings: HubSettings, timeout: float = 90) -> int:
    """Start the hub in the background and wait until it answers; return its pid."""
    pid = running_pid(settings)
    if pid is not None:
        raise HubError(f"the hub is already running (pid {pid}) at {settings.url}")
    jupyterhub = settings.environment / "bin" / "jupyterhub"
    if not jupyterhub.is_file() or not settings.course_root.is_dir():
        raise HubError(
            f"the hub is not set up ({jupyterhub} or {settings.course_root} is "
            "missing): run `make hub-setup` first"
        )
    env = {
        "PATH": f"{jupyterhub.parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        CONFIG_VARIABLE: str(settings.config_file),
    }
    with log_file(settings).open("a") as log:
        process = subprocess.Popen(
            [str(jupyterhub), "-f", str(JUPYTERHUB_CONFIG)],
            cwd=settings.hub_state,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HubError(
                f"the hub exited with status {process.returncode}:\n" + log_tail(settings)
            )
        if healthy(settings):
            return process.pid
        time.sleep(0.5)
    stop(settings)
    raise HubError(f"the hub did not answer within {timeout:g} s:\n{log_tail(settings)}")


def stop(settings: HubSettings, timeout: float = 60) -> bool:
    """SIGTERM the hub and wait for it (and its servers and proxy) to exit; False if none ran."""
    pid = running_pid(settings)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    os.killpg(pid, signal.SIGKILL)
    raise HubError(f"the hub did not stop within {timeout:g} s and was killed")
