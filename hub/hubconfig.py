"""JupyterHub's settings for the course hub, computed from :class:`hub.settings.HubSettings`.

``hub/jupyterhub_config.py`` calls :func:`configure`. What it sets up: the proxy and the hub on
the configured address, state kept in ``<state>/hub`` (database, cookie secret: logins survive a
restart), the authenticator, one server per student under the student's own account
(:class:`hub.spawner.CourseSpawner`) running JupyterLab from the course environment, and
formgrader as a hub-managed service run by the grader account that only the instructors' group
may open (nbgrader's "JupyterHub with one course" set-up, with JupyterHub's roles and scopes).
"""

from __future__ import annotations

import shutil

from hub import accounts, book
from hub.settings import HubSettings

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def proxy_command() -> str:
    """configurable-http-proxy, as ``npm install -g`` put it (``make hub-setup`` does)."""
    found = shutil.which("configurable-http-proxy", path=f"/usr/local/bin:{BASE_PATH}")
    if found is None:
        raise FileNotFoundError(
            "configurable-http-proxy is not installed: run `make hub-setup` "
            "(npm install -g configurable-http-proxy)"
        )
    return found


def allowed_students(settings: HubSettings) -> list[str]:
    """The roster's ids (none before the roster exists)."""
    if not settings.roster.is_file():
        return []
    return [student.id for student in accounts.parse_roster(settings.roster)]


def formgrader_service(settings: HubSettings) -> dict:
    """The formgrader service: nbgrader's server extension in a server run by the grader."""
    bin_dir = settings.environment / "bin"
    return {
        "name": settings.course_id,
        "url": f"http://127.0.0.1:{settings.formgrader_port}",
        "command": [str(bin_dir / "jupyterhub-singleuser")],
        "user": settings.grader,
        "cwd": str(settings.course_root),
        "oauth_no_confirm": True,
        "environment": {
            "HOME": str(settings.course_root),
            "PATH": f"{bin_dir}:{BASE_PATH}",
            "JUPYTERHUB_DEFAULT_URL": "/formgrader",
            # Formgrader is switched off in the course environment; this folder switches it on.
            "JUPYTER_CONFIG_DIR": str(settings.course_root / ".jupyter"),
        },
    }


def configure(c, settings: HubSettings) -> None:
    """Fill JupyterHub's config object ``c`` from ``settings``."""
    state = settings.hub_state
    bin_dir = settings.environment / "bin"
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.internal_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.internal_port + 1}"
    c.ConfigurableHTTPProxy.command = [proxy_command()]
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    # Stopping the hub stops every student's server and the proxy: nothing is left running.
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True

    instructors = set(settings.instructors)
    c.Authenticator.admin_users = instructors
    if settings.authenticator == "native":
        c.JupyterHub.authenticator_class = "native"
        # Every sign-up waits for an instructor's approval at /hub/authorize.
        c.NativeAuthenticator.open_signup = False
        c.NativeAuthenticator.allow_all = True
        c.NativeAuthenticator.minimum_password_length = 10
        c.NativeAuthenticator.check_common_password = True
    else:
        c.JupyterHub.authenticator_class = "hub.testauth.LoopbackPasswordAuthenticator"
        c.LoopbackPasswordAuthenticator.passwords_file = str(settings.test_passwords)
        c.Authenticator.allowed_users = instructors | set(allowed_students(settings))

    group = settings.instructors_group
    c.JupyterHub.load_groups = {group: {"users": sorted(instructors)}}
    c.JupyterHub.load_roles = [
        {
            "name": group,
            "groups": [group],
            "scopes": [
                f"access:services!service={settings.course_id}",
                "list:services",
                f"read:services!service={settings.course_id}",
            ],
        }
    ]
    c.JupyterHub.services = [formgrader_service(settings)]

    c.JupyterHub.spawner_class = "hub.spawner.CourseSpawner"
    c.Spawner.cmd = [str(bin_dir / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = settings.start_timeout
    c.Spawner.http_timeout = settings.start_timeout
    c.Spawner.environment = {
        "PATH": f"{bin_dir}:{BASE_PATH}",
        # nbgrader's exchange and course id for the Assignments tab and Validate.
        "JUPYTER_CONFIG_PATH": str(settings.student_config),
        # The book's launch links clone the repository's URL: git reads the hub's mirror.
        "GIT_CONFIG_SYSTEM": str(book.git_config_file(settings)),
    }
    c.CourseSpawner.memory_per_process = settings.memory_per_process
    c.CourseSpawner.processes_per_student = settings.processes_per_student
