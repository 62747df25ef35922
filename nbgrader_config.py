"""nbgrader configuration of the course: the repository is the course root.

``solutions/`` holds the instructor's notebooks (reference solutions and hidden tests),
``exercises/`` the student versions that ``nbgrader generate_assignment`` writes from them. All
that grading produces (the gradebook, ``submitted/``, ``autograded/``, ``feedback/``, logs and
grade tables) lives in the git-ignored workspace ``grading/``. Run the instructor commands
through ``python -m nf_course.instructor`` (see the README), which grades student by student.
Autograding runs each notebook's kernel in a bubblewrap sandbox (``nf_course/sandbox.py``;
README, "Grading in a sandbox") unless ``NF_COURSE_SANDBOX=0`` is set (``--no-sandbox``).
"""

import importlib.util
import os
import re
import sys

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters import Autograde
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor, SaveAutoGrades


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback preprocessor: strip hidden-test code and the tracebacks of the cells holding it.

    nbgrader restores hidden tests into the autograded notebook and, by default, shows them in
    the feedback with their tracebacks (nbgrader#917). Here every ``### BEGIN HIDDEN TESTS``
    ... ``### END HIDDEN TESTS`` block becomes a one-line notice, and an error raised in such a
    cell keeps only its type and message (the checks write those for students). Defined here
    rather than in ``nf_course`` so that every nbgrader command starts without importing torch.
    """

    block = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*$", re.S | re.M)
    notice = "# (hidden tests: their code is not shown; the error below says what failed)"

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or "BEGIN HIDDEN TESTS" not in cell.source:
            return cell, resources
        cell.source = self.block.sub(self.notice, cell.source)
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources


def _sandbox_module():
    """``nf_course/sandbox.py`` loaded on its own: importing the package would import torch."""
    name = "_nf_course_sandbox"
    if name not in sys.modules:
        package = importlib.util.find_spec("nf_course")  # locates it without importing it
        path = os.path.join(os.path.dirname(package.origin), "sandbox.py")
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


c = get_config()  # noqa: F821 (injected by nbgrader's config loader)

course_root = os.path.dirname(os.path.abspath(__file__))
workspace = os.path.join(course_root, "grading")
os.makedirs(workspace, exist_ok=True)

c.CourseDirectory.course_id = "nf-course"
c.CourseDirectory.root = course_root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(workspace, "gradebook.db")

# Every cell gets 30 s (heavy demonstration cells shrink when NBGRADER_EXECUTION is set); a
# kernel that ignores the interrupt after a timeout fails that student only (the instructor
# tool runs nbgrader once per student, under an outer time limit).
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True

# Every grading kernel starts seeded, with warnings on stdout (nf_course/grading_session.py):
# a regrade gives the same scores, and a warning from correct code costs no point.
os.environ["PYTHONHASHSEED"] = "0"  # inherited by plain kernels; the sandbox sets its own
c.Execute.extra_arguments = [
    "--IPKernelApp.exec_lines=from nf_course.grading_session import start as _start; "
    "_start(); del _start"
]

# Each student's kernel runs in a sandbox: it sees no course file but its own submission, has no
# network and runs under limits (memory, processes, CPU time, file size, a small private disk).
if os.environ.get("NF_COURSE_SANDBOX", "1") != "0":
    autograde = _sandbox_module().autograde_preprocessors()
else:
    autograde = Autograde.class_traits()["autograde_preprocessors"].default()

# Locked test cells are restored from the gradebook, and deleted ones are put back.
c.OverwriteCells.add_missing_cells = True

# Tampering: after the notebook ran and before it is scored, nf_course.tamper analyses the cells
# the student could edit; the tests after a flagged cell score 0, and the flags are recorded in
# grading/tamper/ for `instructor autograde` and `instructor grades`. Named by its import path, it
# is imported (with torch) by `nbgrader autograde` only.
autograde.insert(autograde.index(SaveAutoGrades), "nf_course.tamper.FlagTampering")
c.Autograde.autograde_preprocessors = autograde
c.FlagTampering.source_directory = os.path.join(course_root, "solutions")
c.FlagTampering.report_directory = os.path.join(workspace, "tamper")

# Feedback never shows hidden test code, nor the tracebacks that would quote it.
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
