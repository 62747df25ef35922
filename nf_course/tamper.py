"""Checks the student cannot rewrite: flag the submissions whose code can reach the checker.

Student cells run in the kernel that then runs the hidden tests, so a cell can replace the
check functions (``setattr(nf_course.grading_checks, name, ...)``, ``sys.modules``,
``builtins``, ``torch.allclose = ...``, rebinding ``check_close``) and score full marks for no
work. The sandbox keeps the files safe but not the kernel's memory. Three designs were weighed:

* running the decisive comparisons out of the student's reach (a second kernel) would mean
  shipping the student's modules to it by pickling, which runs code of the student's choosing,
  and would change every hidden test;
* verifying at run time that the checker's objects are the originals can itself be patched
  by the code it watches (an object's ``__eq__``, a frame, ``gc``), and cannot see wrappers
  installed in torch's dispatcher;
* a static analysis of the code the student wrote, done by the grader before it scores,
  outside the kernel: nothing the student runs can change its verdict. Python is too dynamic
  for an analysis to follow every value, so it denies by default: any construct that could
  reach an object the student's code did not create (reflection, dynamic code, interpreter
  modules, attribute or item writes on imported or instructor-made objects, dunders, frames,
  rebinding the names the tests use) is flagged, and correct code, which never needs these,
  is not. This one is used; the rules are in :mod:`nf_course.tamper_rules`, the names they
  consult in :mod:`nf_course.tamper_names`.

Limits, by choice: item writes into a function's argument are allowed (a bijector that changes
its input in place is a mistake the checker must grade, not a flag), and values are not
followed through calls, so the rules refuse the routes that reach the checker (passing a check,
a module object or ``self`` of the caller's choice) rather than tracking each value.

Which cells: every code cell whose source is not, verbatim, a non-solution code cell of the
instructor's notebook in ``solutions/`` (locked cells are restored by nbgrader before this
runs, deleted ones added back under a comment that is ignored; the given cells a student
leaves untouched are the instructor's code).

What a flag costs: the graded test cells that run after the first flagged cell (only those can
see its effects) get an error output naming the flag before nbgrader's ``SaveAutoGrades``
scores them, so they score 0 and the student's feedback says why; the cells before it keep
their points. The flags go to ``grading/tamper/<assignment>/<student>/<notebook>.json``, which
``instructor autograde`` prints and ``instructor grades`` writes to ``grades.csv`` (column
``flag``) for a human to review. Tests: ``tests/test_tamper.py`` (rules on snippets, and no
flag on any reference solution, correct rewrite or mistake) and ``tests/test_hostile.py``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from nf_course.tamper_names import (
    NotebookNames,
    attached_methods,
    bindings_of,
    builtins_read,
    import_bindings,
    parse_cell,
)
from nf_course.tamper_rules import CHECKER_PACKAGES, Finding, analyse_cell, top_level_kinds

__all__ = [
    "ERROR_NAME",
    "Flag",
    "FlagTampering",
    "analyse_notebook",
    "clear_flags",
    "instructor_sources",
    "penalize",
    "read_flags",
]

ERROR_NAME = "TamperingFlagged"
# The comment nbgrader's OverwriteCells puts above a deleted test cell that it adds back.
RESTORED = re.compile(r"\A# This cell \(id:[^)]*\) was missing from the submission\..*\n\n")


@dataclass(frozen=True)
class Flag:
    """A finding in one cell of a submission: the cell's position, its nbgrader id (or
    ``cell N``), and the :class:`~nf_course.tamper_rules.Finding`."""

    index: int
    cell: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.cell}, line {self.line}: [{self.rule}] {self.detail}"


def instructor_sources(source_notebook: nbformat.NotebookNode) -> list[str]:
    """The code of the instructor's cells: every code cell that is not a solution cell."""
    return [
        cell.source
        for cell in source_notebook.cells
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("solution")
    ]


def _notebook_names(instructor: list, student: list) -> NotebookNames:
    """The names the rules need: what the instructor's cells bind, and every top-level kind."""
    names = NotebookNames()
    for tree in instructor + student:
        for statement, name, how in bindings_of(tree):
            if how != "import":
                continue
            for bound, module, attribute in import_bindings(statement):
                if bound != name:
                    continue
                path = module if attribute is None else f"{module}.{attribute}"
                names.modules[name] = path
                if attribute is None:
                    names.module_names.add(name)
                if any(path == p or path.startswith(p + ".") for p in CHECKER_PACKAGES):
                    names.checkers.add(name)
    for tree in instructor:
        for statement, name, how in bindings_of(tree):
            names.kinds[name] = "outside"
            if how == "import":
                allowed = names.protected.setdefault(name, set())
                allowed.update((m, a) for b, m, a in import_bindings(statement) if b == name)
            elif how == "def":
                names.protected[name] = set()
        for name in builtins_read(tree):
            names.protected.setdefault(name, set())
    names.methods = attached_methods(student)
    for tree in student:
        for name, kind in top_level_kinds(tree, names).items():
            names.kinds[name] = "outside" if "outside" in (kind, names.kinds.get(name)) else "own"
    return names


def analyse_notebook(cells: list[nbformat.NotebookNode], instructor: list[str]) -> list[Flag]:
    """The flags of a submission's code cells, in cell order; ``instructor`` is the code of
    the instructor's cells (:func:`instructor_sources`), which is trusted."""
    trusted = set(instructor)
    instructor_trees = [t for t in map(parse_cell, instructor) if t is not None]
    student: list[tuple[int, str, object]] = []
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or RESTORED.sub("", cell.source) in trusted:
            continue
        tree = parse_cell(cell.source)
        if tree is None:  # it does not compile: the kernel runs none of it
            continue
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        student.append((index, grade_id or f"cell {index + 1}", tree))
    names = _notebook_names(instructor_trees, [tree for _, _, tree in student])
    flags = []
    for index, label, tree in student:
        findings: list[Finding] = analyse_cell(tree, names)
        flags.extend(Flag(index, label, f.line, f.rule, f.detail) for f in findings)
    return flags


def penalize(cells: list[nbformat.NotebookNode], flags: list[Flag]) -> list[str]:
    """Give every graded test cell after the first flagged cell an error naming the flag;
    returns their grade ids. nbgrader scores a code cell with an error output 0."""
    if not flags:
        return []
    first = min(flags, key=lambda f: (f.index, f.line))
    message = (
        f"tampering flagged: {first} (and {len(flags) - 1} more); this test scores 0 until an "
        "instructor reviews the submission"
        if len(flags) > 1
        else f"tampering flagged: {first}; this test scores 0 until an instructor reviews it"
    )
    zeroed = []
    for cell in cells[first.index + 1 :]:
        nbgrader = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not nbgrader.get("grade") or nbgrader.get("solution"):
            continue
        error = nbformat.v4.new_output(
            "error", ename=ERROR_NAME, evalue=message, traceback=[f"{ERROR_NAME}: {message}"]
        )
        cell.outputs.insert(0, error)  # scored before any partial-credit value
        zeroed.append(nbgrader.get("grade_id", ""))
    return zeroed


def _report_path(directory: str | Path, assignment: str, student: str) -> Path:
    return Path(directory) / assignment / student


def read_flags(directory: str | Path, assignment: str, student: str) -> str:
    """The flags recorded for a student's submission, as one line for a person ("" if none)."""
    folder = _report_path(directory, assignment, student)
    parts = []
    for path in sorted(folder.glob("*.json")):
        report = json.loads(path.read_text())
        if report["flags"]:
            flags = "; ".join(str(Flag(**flag)) for flag in report["flags"])
            zeroed = ", ".join(report["zeroed"]) or "none"
            parts.append(f"{path.stem}: {flags} (tests scored 0: {zeroed})")
    return " | ".join(parts)


def clear_flags(directory: str | Path, assignment: str, student: str) -> None:
    """Remove a student's recorded flags before the submission is graded again."""
    for path in _report_path(directory, assignment, student).glob("*.json"):
        path.unlink()


class FlagTampering(NbGraderPreprocessor):
    """Autograde preprocessor (after ``Execute``, before ``SaveAutoGrades``): analyse the
    submission, zero the tests after a flagged cell and record the flags (see the module)."""

    source_directory = Unicode(help="the instructor's notebooks (solutions/)").tag(config=True)
    report_directory = Unicode(help="where the flags of each submission go").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        assignment, notebook, student = info["assignment"], info["notebook"], info["student"]
        source_path = os.path.join(self.source_directory, assignment, f"{notebook}.ipynb")
        source = nbformat.read(source_path, as_version=4)
        flags = analyse_notebook(nb.cells, instructor_sources(source))
        zeroed = penalize(nb.cells, flags)
        folder = _report_path(self.report_directory, assignment, student)
        folder.mkdir(parents=True, exist_ok=True)
        report = {"flags": [asdict(flag) for flag in flags], "zeroed": zeroed}
        (folder / f"{notebook}.json").write_text(json.dumps(report, indent=1) + "\n")
        for flag in flags:
            self.log.warning("Tampering flagged in %s/%s: %s", student, notebook, flag)
        return nb, resources
