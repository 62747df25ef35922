"""The book's launch buttons and the hub: the URL in ``_config.yml``, and where chapters come from.

Jupyter Book 1.x (sphinx-book-theme) links each chapter to
``{jupyterhub_url}/hub/user-redirect/git-pull?repo={repository.url}&urlpath=lab/tree/{repo}/
{path}&branch={repository.branch}``: nbgitpuller, in the student's server, clones the book's
repository and opens the chapter. The hub has no network, so it keeps a local bare repository
holding only the book's chapters (never ``solutions/``), and the students' servers get a git
``url.<mirror>.insteadOf = <repository.url>`` rule in their git config: nbgitpuller's clone of
the public URL reads the mirror. Tests: ``tests_hub/test_settings.py`` (the URL in
``_config.yml``), ``tests_hub/test_round_trip.py`` (a chapter lands as a notebook).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import yaml

from hub.settings import REPOSITORY, HubSettings

BOOK_CONFIG = REPOSITORY / "_config.yml"
URL_LINE = re.compile(r"^(\s*jupyterhub_url:\s*)(\"[^\"]*\"|'[^']*'|[^#\s]*)(.*)$", re.M)


def book_config(path: Path = BOOK_CONFIG) -> dict:
    return yaml.safe_load(path.read_text())


def repository() -> tuple[str, str]:
    """``(url, branch)`` of the book's repository, as the launch buttons name it."""
    config = book_config()["repository"]
    return config["url"].rstrip("/"), config.get("branch", "master")


def configured_launch_url(path: Path = BOOK_CONFIG) -> str:
    """``launch_buttons.jupyterhub_url`` of ``_config.yml``."""
    return book_config(path)["launch_buttons"]["jupyterhub_url"]


def sync_launch_url(settings: HubSettings, path: Path = BOOK_CONFIG) -> bool:
    """Write the hub's URL into ``_config.yml`` (comments kept); True if it changed."""
    text = path.read_text()
    if len(URL_LINE.findall(text)) != 1:
        raise ValueError(f"{path}: expected exactly one launch_buttons.jupyterhub_url line")
    updated = URL_LINE.sub(lambda m: f'{m.group(1)}"{settings.url}"{m.group(3)}', text)
    if updated != text:
        path.write_text(updated)
    return updated != text


def launch_url(settings: HubSettings, chapter: str) -> str:
    """The link of a chapter's JupyterHub launch button (``chapter`` like ``book/x.md``)."""
    url, branch = repository()
    name = url.rsplit("/", 1)[-1]
    query = urlencode(
        {"repo": url, "urlpath": f"lab/tree/{name}/{chapter}", "branch": branch}, safe="/"
    )
    return f"{settings.url}/hub/user-redirect/git-pull?{query}"


def git_config(settings: HubSettings) -> str:
    """Git's settings for the students' servers: the repository's URL reads the local mirror.

    Given as the *system* config (``GIT_CONFIG_SYSTEM``): git honours ``safe.directory`` (the
    mirror belongs to root) only there or in the global file, which stays the student's own.
    """
    url, _ = repository()
    return (
        f'[url "file://{settings.book_mirror}"]\n\tinsteadOf = {url}\n'
        f"[safe]\n\tdirectory = {settings.book_mirror}\n"
    )


def git_config_file(settings: HubSettings) -> Path:
    return settings.student_config / "gitconfig"


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def publish_book(settings: HubSettings) -> int:
    """Replace the mirror's branch with one commit of the repository's tracked ``book/`` files.

    Returns the number of files published. The mirror is readable by every account.
    """
    _, branch = repository()
    listed = subprocess.run(
        ["git", "ls-files", "-z", "book"], cwd=REPOSITORY, check=True, capture_output=True
    ).stdout.decode()
    files = [name for name in listed.split("\0") if name]
    if not files:
        raise RuntimeError(f"no tracked files under {REPOSITORY / 'book'}")
    mirror = settings.book_mirror
    if not (mirror / "HEAD").is_file():
        mirror.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={branch}", ".", cwd=mirror)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name in files:
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPOSITORY / name, work / name)
        _git("init", "--quiet", f"--initial-branch={branch}", cwd=work)
        _git("add", "--all", cwd=work)
        _git(
            "-c",
            "user.name=nf-course hub",
            "-c",
            "user.email=hub@localhost",
            "commit",
            "--quiet",
            "-m",
            "The book's chapters for the course hub",
            cwd=work,
        )
        _git("push", "--quiet", "--force", str(mirror), f"HEAD:{branch}", cwd=work)
    subprocess.run(["chmod", "-R", "a+rX", str(mirror)], check=True)
    return len(files)
