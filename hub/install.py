"""What the course hub needs on the machine: Debian packages, the proxy, the course environment.

The course environment (``paths.environment``, default ``/opt/nf-course/venv``) is what every
student's server, kernel and the formgrader service run: torch (the CPU wheel), the course's
package ``nf_course`` (installed as a copy, not editable: students cannot read the repository)
and the ``hub`` and ``grading`` extras. It is readable by all and writable by root only. Its
Jupyter settings keep formgrader, create-assignment and the course list away from students, and
open the chapters (MyST markdown) as notebooks. It is rebuilt when the package or its
dependencies change (a stamp holds their hash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from hub.settings import REPOSITORY, HubSettings

TORCH = "torch==2.13.0"  # the CPU wheel, as in the Makefile
# Debian's Python: every account can run it (a pyenv or a venv under /root is closed to students).
SYSTEM_PYTHON = "/usr/bin/python3"
DEBIAN_PACKAGES = {
    "git": "git",
    "node": "nodejs",
    "npm": "npm",
    "useradd": "passwd",
    SYSTEM_PYTHON: "python3-venv",
}
STUDENT_SERVER_CONFIG = {
    "ServerApp": {
        "jpserver_extensions": {
            "nbgrader.server_extensions.formgrader": False,
            "nbgrader.server_extensions.course_list": False,
        }
    }
}
STUDENT_LAB_CONFIG = {
    "disabledExtensions": {
        "@jupyter/nbgrader:formgrader": True,
        "@jupyter/nbgrader:create-assignment": True,
        "@jupyter/nbgrader:course-list": True,
    }
}
# Chapters are MyST markdown: open them as notebooks (through jupytext), as the launch buttons do.
# No news or update checks: the hub has no network, and students need no pop-up.
LAB_OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    },
    "@jupyterlab/apputils-extension:notification": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def install_system_packages() -> None:
    """apt-get the Debian packages whose commands are missing (and venv for Debian's Python)."""
    missing = {pkg for cmd, pkg in DEBIAN_PACKAGES.items() if not shutil.which(cmd)}
    if "python3-venv" not in missing:
        probe = [SYSTEM_PYTHON, "-c", "import ensurepip, venv"]
        if subprocess.run(probe, check=False, capture_output=True).returncode != 0:
            missing.add("python3-venv")
    if missing:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *sorted(missing))


def install_proxy() -> None:
    """configurable-http-proxy from npm (JupyterHub's default proxy)."""
    if not shutil.which("configurable-http-proxy", path="/usr/local/bin:/usr/bin:/bin"):
        run("npm", "install", "--global", "--no-fund", "--no-audit", "configurable-http-proxy")


def package_files() -> list[Path]:
    """What the course environment installs from the repository."""
    files = [REPOSITORY / "README.md", REPOSITORY / "pyproject.toml"]
    package = REPOSITORY / "nf_course"
    files += sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def fingerprint() -> str:
    digest = hashlib.sha256(TORCH.encode())
    for path in package_files()[1:]:  # pyproject.toml and the package, not the README
        digest.update(path.relative_to(REPOSITORY).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_jupyter_settings(env: Path) -> None:
    """The course environment's Jupyter settings for students (see the module)."""
    etc = env / "etc" / "jupyter"
    write_json(
        etc / "jupyter_server_config.d" / "zz_nf_course_students.json", STUDENT_SERVER_CONFIG
    )
    write_json(etc / "labconfig" / "page_config.json", STUDENT_LAB_CONFIG)
    write_json(env / "share/jupyter/lab/settings/overrides.d/nf-course.json", LAB_OVERRIDES)
    run("chmod", "-R", "go-w,a+rX", str(env))


def install_environment(settings: HubSettings) -> bool:
    """Build the course environment unless its stamp matches; True if it was (re)built."""
    env = settings.environment
    stamp = env / ".nf-course-stamp"
    wanted = fingerprint()
    if stamp.is_file() and stamp.read_text() == wanted:
        write_jupyter_settings(env)
        return False
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    run(SYSTEM_PYTHON, "-m", "venv", str(env))
    pip = str(env / "bin" / "pip")
    run(pip, "install", "--quiet", TORCH)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder)
        for path in package_files():
            target = copy / path.relative_to(REPOSITORY)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        run(pip, "install", "--quiet", f"{copy}[hub,grading]")
    write_jupyter_settings(env)
    stamp.write_text(wanted)
    return True
