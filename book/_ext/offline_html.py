"""Make the HTML book work offline: MathJax ships with it, and no page errors in the console.

Sphinx loads MathJax from a CDN by default, and a reader without internet (an intranet
JupyterHub, a laptop on a train) then sees every formula as raw TeX. This Sphinx extension
points ``mathjax_path`` at a pinned copy of MathJax 3 that lives in the Python environment and
is copied into ``_build/html/_static/mathjax/`` with the rest of the book's static files. The
``mathjax3_config`` of ``_config.yml`` (the shared TeX macros) is untouched.

Where the copy comes from: the ``mathjax`` package of the npm registry, fetched with ``npm
pack`` at the pinned version and verified against the pinned SHA-512 digest (npm's
``integrity`` field) before it is unpacked; only its ``es5/`` build (what a CDN would serve)
and its licence are kept, in ``<sys.prefix>/share/nf-course/mathjax-<version>/mathjax/``.
``make setup`` installs it; a build that finds no copy installs it first, and fails with a
message saying how when it cannot (no ``npm``, no network, a digest mismatch). Run
``python book/_ext/offline_html.py`` to install the copy by hand.

It also drops scripts that a page would load twice: sphinx-thebe 0.3.1 registers its inline
configuration twice, and the second copy throws "Identifier 'THEBE_JS_URL' has already been
declared" in every reader's console.

``tests_book/test_html.py`` opens every built page offline in headless Chromium to check all this.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

MATHJAX_VERSION = "3.2.2"
# npm's dist.integrity of mathjax-3.2.2.tgz: base64 of the tarball's SHA-512 digest.
MATHJAX_SHA512 = (
    "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
)
# The combined TeX + MathML input, CommonHTML output component: Sphinx's default, served locally.
MATHJAX_ENTRY = "tex-mml-chtml.js"
INSTALL_COMMAND = "python book/_ext/offline_html.py"


def install_root(prefix: str | os.PathLike[str] = sys.prefix) -> Path:
    """The folder whose ``mathjax/`` subfolder holds the pinned MathJax build."""
    return Path(prefix) / "share" / "nf-course" / f"mathjax-{MATHJAX_VERSION}"


def is_installed(root: Path) -> bool:
    """Whether ``root`` holds a complete copy (install() moves a copy into place whole)."""
    return (root / "mathjax" / MATHJAX_ENTRY).is_file()


def sha512_integrity(path: Path) -> str:
    """npm's integrity string (without the ``sha512-`` prefix) of the file at ``path``."""
    return base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode("ascii")


def _fetch_tarball(folder: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"npm was not found, so MathJax {MATHJAX_VERSION} cannot be fetched for the offline "
            f"book: install Node.js and npm, then run `{INSTALL_COMMAND}`."
        )
    command = [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent", "--pack-destination", "."]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    tarball = folder / f"mathjax-{MATHJAX_VERSION}.tgz"
    if result.returncode != 0 or not tarball.is_file():
        raise RuntimeError(
            f"`npm pack mathjax@{MATHJAX_VERSION}` failed (exit {result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    digest = sha512_integrity(tarball)
    if digest != MATHJAX_SHA512:
        raise RuntimeError(
            f"mathjax-{MATHJAX_VERSION}.tgz has SHA-512 {digest}, expected {MATHJAX_SHA512}: "
            "refusing to ship a MathJax that is not the pinned one."
        )
    return tarball


def _unpack(tarball: Path, target: Path) -> None:
    """Extract ``package/es5/*`` and the licence of the npm tarball into ``target``."""
    with tarfile.open(tarball, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            if member.name.startswith("package/es5/") or member.name == "package/LICENSE":
                member.name = member.name.removeprefix("package/es5/").removeprefix("package/")
                members.append(member)
        archive.extractall(target, members=members, filter="data")
    if not (target / MATHJAX_ENTRY).is_file():
        raise RuntimeError(f"{tarball.name} has no es5/{MATHJAX_ENTRY}")


def install(root: Path | None = None) -> Path:
    """Fetch, verify and unpack the pinned MathJax under ``root`` (default: this environment).

    Returns ``root``; does nothing when a complete copy is already there.
    """
    root = install_root() if root is None else root
    if is_installed(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".mathjax-") as scratch:
        scratch_path = Path(scratch)
        tarball = _fetch_tarball(scratch_path)
        staging = scratch_path / "root"
        _unpack(tarball, staging / "mathjax")
        if root.exists():  # an interrupted earlier install
            shutil.rmtree(root)
        os.replace(staging, root)
    return root


def _use_local_mathjax(app: Sphinx, config: Config) -> None:
    root = install_root()
    if not is_installed(root):
        logging.getLogger(__name__).info(f"installing MathJax {MATHJAX_VERSION} into {root}")
        try:
            install(root)
        except (RuntimeError, OSError, tarfile.TarError) as error:
            raise ExtensionError(f"offline MathJax: {error}") from error
    # html_static_path copies the contents of root, i.e. the folder mathjax/, into _static/.
    config.html_static_path = [*config.html_static_path, str(root)]
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative paths are taken from _static/


def _drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: object
) -> None:
    # In place: this list is the builder's, which later handlers (MathJax's) still append to.
    scripts = context.get("script_files")
    if scripts:
        unique, seen = [], []
        for script in scripts:
            # An inline script is registered with filename None or "": the same script either way.
            key = (script.filename or "", script.priority, script.attributes)
            if key not in seen:
                seen.append(key)
                unique.append(script)
        scripts[:] = unique


def setup(app: Sphinx) -> dict[str, object]:
    """Sphinx entry point (``sphinx: local_extensions`` in ``_config.yml``)."""
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", _use_local_mathjax)
    # Early: html-page-context stops at the first handler that returns a value.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=100)
    return {"version": MATHJAX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    print(f"MathJax {MATHJAX_VERSION} is in {install() / 'mathjax'}")
