"""The book's "Graded assignment" sections describe the assignments as they are.

Every chapter of ``book/`` that describes an assignment does it in a form this test parses: a
link to ``exercises/<folder>/`` with the total ``(N points)``, then one bullet per part,
``- **Part k, <title> (p points):** ...``, which names in backticks the functions and classes
the students write. The test reads the nbgrader source notebook ``solutions/<folder>/*.ipynb``
(its ``## k. <title> (p points)`` headings, the points of its test cells, the ``def`` and
``class`` names of its solution cells, the package functions its cells call) and fails when a
chapter names a part, a point value, a student function or a grading check that the notebook
does not have, or leaves out a part or a function that it has. Nothing is executed.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import json
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

SECTION = re.compile(r"^## Graded assignments?\n(.*?)(?=^## |\Z)", re.S | re.M)
LINK = re.compile(r"\[`exercises/(\w+)/`\]")
ANY_LINK = re.compile(r"exercises/(\w+)/")
PART_BULLET = re.compile(r"^\*\*Part (\d+), (.+?) \((\d+) points?\):\*\*(.*)$", re.S)
POINTS = re.compile(r"\((\d+) points?\)")
HEADING = re.compile(r"^##\s+(\d+)\.\s+(.+?)\s*\((\d+) points?\)\s*$", re.M)
BACKTICKED_NAME = re.compile(r"`([A-Za-z_][\w.]*)`")
DEFINITION = re.compile(r"^\s*(?:def|class)\s+(\w+)", re.M)
TOP_LEVEL_DEFINITION = re.compile(r"^(?:def|class)\s+(\w+)", re.M)
# Where the package's public names come from: a backticked name from one of these is a package
# function, not something the students write.
PACKAGE_MODULES = (
    "nf_course",
    "nf_course.bijectors",
    "nf_course.checks",
    "nf_course.datasets",
    "nf_course.training",
)


@dataclass
class NotebookPart:
    """One graded part of an assignment notebook: its heading and what its cells hold."""

    title: str
    heading_points: int
    test_points: int = 0
    top_level_names: set[str] = field(default_factory=set)
    defined_names: set[str] = field(default_factory=set)


@dataclass
class Notebook:
    """What a chapter may say about an assignment: parts, points, names, code."""

    folder: str
    parts: dict[int, NotebookPart]
    total_points: int
    code: str  # every code cell, solutions and tests included

    def defined_names(self) -> set[str]:
        return set().union(*(part.defined_names for part in self.parts.values()))


@dataclass
class ChapterPart:
    number: int
    title: str
    points: int
    text: str


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def parse_notebook(folder: str) -> Notebook:
    """The nbgrader source notebook of ``folder``: parts by heading, points, names, code."""
    (path,) = sorted((SOLUTIONS / folder).glob("*.ipynb"))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parts: dict[int, NotebookPart] = {}
    current: NotebookPart | None = None
    total, code = 0, []
    for cell in cells:
        source, meta = _source(cell), cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "markdown":
            heading = HEADING.search(source)
            if heading:
                number = int(heading.group(1))
                current = parts[number] = NotebookPart(heading.group(2), int(heading.group(3)))
            elif re.search(r"^## ", source, re.M):
                current = None  # a heading without points ends the part
            continue
        code.append(source)
        if meta.get("grade"):
            points = int(meta.get("points", 0))
            total += points
            if current is not None:
                current.test_points += points
        if meta.get("solution") and current is not None:
            current.top_level_names |= set(TOP_LEVEL_DEFINITION.findall(source))
            current.defined_names |= set(DEFINITION.findall(source))
    return Notebook(folder, parts, total, "\n".join(code))


def _modules(package: str) -> list[str]:
    """``package`` and its submodules."""
    module = importlib.import_module(package)
    return [package, *(f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__))]


def _public(modules: list[str], *, checks_only: bool = False) -> frozenset[str]:
    """Public names of ``modules``; with ``checks_only``, the functions they define themselves."""
    names: set[str] = set()
    for name in modules:
        module = importlib.import_module(name)
        for attribute in dir(module):
            value = getattr(module, attribute)
            defined_here = callable(value) and getattr(value, "__module__", "").startswith(
                ("nf_course.checks", "nf_course.grading_checks")
            )
            if not attribute.startswith("_") and (defined_here or not checks_only):
                names.add(attribute)
    return frozenset(names)


@functools.cache
def package_names() -> frozenset[str]:
    """Public names of the package modules a chapter may cite."""
    return _public([*PACKAGE_MODULES, *_modules("nf_course.bijectors"), *grading_modules()])


@functools.cache
def grading_modules() -> list[str]:
    return _modules("nf_course.grading_checks")


@functools.cache
def check_names() -> frozenset[str]:
    """Public callables of ``nf_course.checks`` and ``nf_course.grading_checks``: what a chapter
    may claim the grading runs."""
    return _public(["nf_course.checks", *grading_modules()], checks_only=True)


def graded_sections() -> dict[str, str]:
    """``{chapter file name: text of its "Graded assignment" section}``."""
    sections = {}
    for path in sorted(BOOK.glob("*.md")):
        match = SECTION.search(path.read_text(encoding="utf-8"))
        if match:
            sections[path.name] = match.group(1)
    return sections


def split_section(text: str) -> tuple[list[ChapterPart], str]:
    """The section's ``Part`` bullets, and the rest of its text (bullets joined to one line)."""
    parts, rest, bullet = [], [], None
    for line in [*text.splitlines(), ""]:
        if line.startswith("- "):
            if bullet is not None:
                rest.append(bullet)
            bullet = line[2:]
        elif bullet is not None and line.startswith("  ") and line.strip():
            bullet += " " + line.strip()
        else:
            if bullet is not None:
                rest.append(bullet)
                bullet = None
            rest.append(line)
    other = []
    for piece in rest:
        match = PART_BULLET.match(piece)
        if match:
            number, title, points, body = match.groups()
            parts.append(ChapterPart(int(number), title, int(points), body))
        else:
            other.append(piece)
    return parts, "\n".join(other)


def _normalized(title: str) -> str:
    return " ".join(title.lower().split())


def _names(text: str) -> list[str]:
    """Backticked identifiers (dotted paths included) in ``text``."""
    return BACKTICKED_NAME.findall(text)


def mismatches(section: str, notebook: Notebook) -> list[str]:
    """Everything a chapter's section says about ``notebook`` that the notebook does not have.

    Returns a list of messages, empty when the description is exact and complete.
    """
    errors: list[str] = []
    parts, other = split_section(section)
    described = {part.number: part for part in parts}
    if sorted(described) != sorted(notebook.parts):
        errors.append(
            f"parts described {sorted(described)}, the notebook has {sorted(notebook.parts)}"
        )
    totals = [int(value) for value in POINTS.findall(other)]
    if totals != [notebook.total_points]:
        errors.append(
            f"total points written {totals}, the notebook's test cells give {notebook.total_points}"
        )
    package, checks, builtin = package_names(), check_names(), set(dir(builtins))
    for number, part in described.items():
        real = notebook.parts.get(number)
        if real is None:
            errors.append(f"part {number} ({part.title!r}) does not exist in the notebook")
            continue
        if _normalized(part.title) != _normalized(real.title):
            errors.append(f"part {number}: title {part.title!r}, the notebook says {real.title!r}")
        if part.points != real.heading_points or part.points != real.test_points:
            errors.append(
                f"part {number}: {part.points} points written, the notebook's heading says "
                f"{real.heading_points} and its test cells give {real.test_points}"
            )
        named = set()
        for name in _names(part.text):
            head = name.split(".")[0]
            if "." not in name and name in real.defined_names:
                named.add(name)
            elif head in {"torch", "nf_course"} or name in builtin:
                continue
            elif name in package:
                if not re.search(rf"\b{re.escape(name)}\b", notebook.code):
                    errors.append(f"part {number}: `{name}` is never used by the notebook")
            else:
                errors.append(f"part {number}: `{name}` is not written in this part")
        for missing in sorted(real.top_level_names - named):
            errors.append(f"part {number}: the students write `{missing}`, the chapter omits it")
    defined = notebook.defined_names()
    for name in _names(section):
        last = name.split(".")[-1]
        if last in checks and not re.search(rf"\b{re.escape(last)}\(", notebook.code):
            errors.append(f"the grading is said to use `{name}`, the notebook never calls it")
        bare = "." not in name
        if bare and name not in defined | package | builtin:
            errors.append(f"`{name}` is neither written in the assignment nor part of nf_course")
    return errors


def described_assignments() -> dict[str, list[str]]:
    """``{assignment folder: chapters whose section describes it part by part}``."""
    found: dict[str, list[str]] = {}
    for chapter, section in graded_sections().items():
        parts, _ = split_section(section)
        if parts:
            (folder,) = set(LINK.findall(section))  # one assignment per described section
            found.setdefault(folder, []).append(chapter)
    return found


ASSIGNMENTS = sorted(path.name for path in SOLUTIONS.iterdir() if path.is_dir())


def test_the_notebooks_have_graded_parts():
    for folder in ASSIGNMENTS:
        notebook = parse_notebook(folder)
        assert notebook.parts, f"{folder}: no '## k. title (p points)' heading found"
        assert notebook.total_points == sum(p.test_points for p in notebook.parts.values()), (
            f"{folder}: test cells outside the graded parts"
        )


def test_every_assignment_is_described_by_exactly_one_chapter():
    described = described_assignments()
    for folder in ASSIGNMENTS:
        assert len(described.get(folder, [])) == 1, (
            f"{folder} is described part by part in {described.get(folder, [])}; expected one "
            "chapter"
        )


@pytest.mark.parametrize("folder", ASSIGNMENTS)
def test_the_description_matches_the_notebook(folder):
    (chapter,) = described_assignments()[folder]
    errors = mismatches(graded_sections()[chapter], parse_notebook(folder))
    assert not errors, f"book/{chapter} on {folder}:\n" + "\n".join(errors)


def test_every_link_to_an_assignment_exists():
    for path in sorted(BOOK.glob("*.md")):
        for folder in ANY_LINK.findall(path.read_text(encoding="utf-8")):
            assert (EXERCISES / folder).is_dir() and (SOLUTIONS / folder).is_dir(), (
                f"book/{path.name} links exercises/{folder}/, which does not exist"
            )


def test_sections_that_only_link_point_to_a_described_assignment():
    described = described_assignments()
    for chapter, section in graded_sections().items():
        parts, _ = split_section(section)
        if not parts:
            for folder in LINK.findall(section):
                assert folder in described, (
                    f"book/{chapter} links {folder}, which no chapter describes"
                )
                assert re.search(r"\bchapter \d+\b", section), (
                    f"book/{chapter} links {folder} without saying which chapter describes it"
                )


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s.replace("(3 points):** `fixed", "(4 points):** `fixed"), "part 2: 4 points"),
        (lambda s: s.replace("(10 points)", "(12 points)"), "total points written [12]"),
        (lambda s: s.replace("`series_log_det`", "`series_log_det` and `roulette`"), "roulette"),
        (lambda s: s.replace("`fixed_point_inverse`", "the inverse"), "omits it"),
        (lambda s: s.replace("Spectral normalization (4", "Hutchinson's estimator (4"), "title"),
        (lambda s: s + "\nIts tests run `check_bijector`.\n", "never calls it"),
        (lambda s: s.replace("- **Part 3", "- Part 3"), "parts described [1, 2]"),
    ],
)
def test_a_drifted_description_is_caught(edit, expected):
    """Each kind of drift the test exists for, made on purpose in chapter 6's section."""
    section = graded_sections()["06_invertible_residual.md"]
    notebook = parse_notebook("07_residual")
    assert mismatches(section, notebook) == []
    errors = mismatches(edit(section), notebook)
    assert any(expected in error for error in errors), errors
