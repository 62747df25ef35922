"""The hub's configuration file: its defaults, its checks, and the book's launch buttons.

Fast and without a hub, except the last test, which starts JupyterHub with the test
authenticator on a non-loopback address and expects it to refuse.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from hubtest import ENVIRONMENT, CourseHub
from traitlets.config import Config

from hub import book, control, hubconfig, settings

TOML = """course_id = "c1"
instructors = ["teacher"]
[hub]
ip = "{ip}"
authenticator = "{auth}"
test_passwords = "/nonexistent.json"
"""


def write(tmp_path: Path, ip: str = "127.0.0.1", auth: str = "test", extra: str = "") -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(TOML.format(ip=ip, auth=auth) + extra)
    return path


def test_the_repository_default_is_a_real_authenticator_on_loopback() -> None:
    default = settings.load(settings.DEFAULT_CONFIG)
    assert default.authenticator == "native"
    assert settings.is_loopback(default.ip)
    config = Config()
    hubconfig.configure(config, default)
    assert config.JupyterHub.authenticator_class == "native"
    assert config.NativeAuthenticator.open_signup is False  # instructors approve each sign-up
    assert config.JupyterHub.spawner_class == "hub.spawner.CourseSpawner"


def test_the_book_launch_buttons_point_at_the_configured_hub() -> None:
    assert book.configured_launch_url() == settings.load(settings.DEFAULT_CONFIG).url


def test_sync_writes_the_hub_url_into_a_book_config_and_keeps_the_rest(tmp_path) -> None:
    copy = tmp_path / "_config.yml"
    shutil.copy(book.BOOK_CONFIG, copy)
    hub = settings.load(write(tmp_path, extra='public_url = "https://hub.example.org/"\n'))
    assert book.sync_launch_url(hub, copy)
    assert book.configured_launch_url(copy) == "https://hub.example.org"
    before, after = book.BOOK_CONFIG.read_text().splitlines(), copy.read_text().splitlines()
    assert [a for a, b in zip(before, after, strict=True) if a != b] == [
        line for line in before if "jupyterhub_url:" in line
    ]
    assert not book.sync_launch_url(hub, copy)  # already in step


def test_launch_url_follows_jupyter_books_format() -> None:
    hub = settings.load(settings.DEFAULT_CONFIG)
    url = book.launch_url(hub, "book/02_change_of_variables.md")
    assert url == (
        f"{hub.url}/hub/user-redirect/git-pull?repo=https%3A//github.com/nf-course/nf-course"
        "&urlpath=lab/tree/nf-course/book/02_change_of_variables.md&branch=main"
    )


@pytest.mark.parametrize("ip", ["0.0.0.0", "192.0.2.10", "hub.example.org", "::"])
def test_the_test_authenticator_refuses_a_non_loopback_address(tmp_path, ip) -> None:
    with pytest.raises(settings.HubConfigError, match="only runs on a loopback address"):
        settings.load(write(tmp_path, ip=ip))


@pytest.mark.parametrize("ip", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_the_test_authenticator_runs_on_loopback(tmp_path, ip) -> None:
    assert settings.load(write(tmp_path, ip=ip)).authenticator == "test"


def test_a_bad_size_is_named(tmp_path) -> None:
    with pytest.raises(settings.HubConfigError, match=r"limits\.memory_per_process = 'lots'"):
        settings.load(write(tmp_path, extra='[limits]\nmemory_per_process = "lots"\n'))
    assert settings.load(settings.DEFAULT_CONFIG).memory_per_process == 4 * 1024**3


def test_unknown_authenticator_and_bad_course_id_are_named(tmp_path) -> None:
    with pytest.raises(settings.HubConfigError, match="choose one of native, test"):
        settings.load(write(tmp_path, auth="pam"))
    path = tmp_path / "bad.toml"
    path.write_text('course_id = "a course"\n')
    with pytest.raises(settings.HubConfigError, match="course_id = 'a course'"):
        settings.load(path)


def test_jupyterhub_itself_refuses_the_test_authenticator_off_loopback() -> None:
    """JupyterHub started by hand on 0.0.0.0 with the test authenticator exits at once."""
    hub = CourseHub.create([], ip="0.0.0.0")
    try:
        port = int(
            next(
                line.split("=")[1]
                for line in hub.config.read_text().splitlines()
                if line.startswith("port")
            )
        )
        process = subprocess.run(
            [str(ENVIRONMENT / "bin" / "jupyterhub"), "-f", str(control.JUPYTERHUB_CONFIG)],
            env={**os.environ, settings.CONFIG_VARIABLE: str(hub.config)},
            cwd=hub.root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert process.returncode != 0
        assert "only runs on a loopback address" in process.stdout + process.stderr
        refused = hub.cli("start", check=False)
        assert "only runs on a loopback address" in refused and "error:" in refused
        assert not _listening(port)
    finally:
        hub.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
