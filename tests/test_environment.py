"""The conda environment (JupyterHub and Binder images) stays in step with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name, where they differ
# Extras that environment.yml leaves out: "bench" holds only the peers (zuko, nflows) that
# benchmarks/peer_step.py compares against; the course's hub and Binder images do not need them.
EXTRAS_NOT_IN_CONDA = {"bench"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name in EXTRAS_NOT_IN_CONDA:
            continue
        requirements += [r for r in extra if not r.startswith("nf-course")]
    return dict(_split(r) for r in requirements)


def conda_requirements() -> dict[str, str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    entries = [d for d in environment["dependencies"] if isinstance(d, str)]
    parsed = dict(
        _split(d.replace("=", "==", 1) if re.match(r"^\w+=\d", d) else d) for d in entries
    )
    parsed.pop("python"), parsed.pop("pip")
    return parsed


def test_every_dependency_is_in_both_files_with_the_same_versions():
    expected = {
        CONDA_NAMES.get(name, name): spec for name, spec in pyproject_requirements().items()
    }
    assert conda_requirements() == expected


def test_environment_installs_the_package_itself():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def test_jupyter_book_is_pinned_below_2():
    assert pyproject_requirements()["jupyter-book"] == ">=1.0.4,<2"
