"""The autograding kernel's start-up (nf_course/grading_session.py, wired in nbgrader_config.py):
seeded generators and warnings on stdout, in real kernels started as nbgrader starts them."""

from __future__ import annotations

import ast
import runpy
import warnings
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from traitlets.config import Config

from nf_course.grading_session import SEED, WARNING_MARKER, show_warning_on_stdout, start

REPOSITORY = Path(__file__).resolve().parents[1]


def _course_config() -> Config:
    config = Config()
    runpy.run_path(str(REPOSITORY / "nbgrader_config.py"), {"get_config": lambda: config})
    return config


def _run_in_grading_kernel(*sources: str) -> list[list[dict]]:
    """Execute cells in a kernel started with the course's ``Execute.extra_arguments``; return
    each cell's outputs."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    extra = list(_course_config().Execute.extra_arguments)
    NotebookClient(notebook, timeout=120, kernel_name="python3", extra_arguments=extra).execute()
    return [cell.outputs for cell in notebook.cells]


def test_start_seeds_the_global_generators_and_routes_warnings(capsys) -> None:
    shown = warnings.showwarning
    try:
        start()
        first = torch.randn(3)
        start()
        assert torch.equal(torch.randn(3), first)
        assert warnings.showwarning is show_warning_on_stdout
        warnings.warn("deprecated but correct", UserWarning, stacklevel=1)
    finally:
        warnings.showwarning = shown
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(WARNING_MARKER) and "deprecated but correct" in captured.out


@pytest.mark.slow
def test_grading_kernels_start_seeded_and_print_warnings_on_stdout() -> None:
    cells = (
        "import torch\nprint(torch.randn(4).tolist())",
        # a real torch warning, several lines long: float() of a tensor that requires grad
        "t = torch.ones(3, requires_grad=True)\nprint(float(t.sum()))",
        "import sys\nprint('a real error message', file=sys.stderr)",
    )
    first = _run_in_grading_kernel(*cells)
    second = _run_in_grading_kernel(*cells)
    assert first[0][0]["text"] == second[0][0]["text"], "a regrade drew other random numbers"
    drawn = ast.literal_eval(first[0][0]["text"])
    expected = torch.randn(4, generator=torch.Generator().manual_seed(SEED)).tolist()
    assert drawn == expected, "the kernel's global generator was not seeded with SEED"
    warned = first[1]
    assert {o["name"] for o in warned} == {"stdout"}, "a warning reached stderr"
    text = "".join(o["text"] for o in warned)
    assert WARNING_MARKER in text and "requires_grad=True" in text and "3.0" in text
    assert [o["name"] for o in first[2]] == ["stderr"], "other stderr output must still fail"
