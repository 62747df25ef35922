"""The tampering analysis (nf_course.tamper): hostile snippets are flagged with the expected
rule, unusual but legal code is not, and no reference solution, correct rewrite or mistake of
any assignment is ever flagged. Fast: no kernel runs."""

from __future__ import annotations

import nbformat
import nbgrader_course as course
import pytest

from nf_course.tamper import (
    ERROR_NAME,
    FlagTampering,
    analyse_notebook,
    clear_flags,
    instructor_sources,
    penalize,
    read_flags,
)

GIVEN = """import math
import os

import torch

from nf_course.checks import check_bijector, check_invertible
from nf_course.grading_checks import check_close

torch.set_default_dtype(torch.float64)
"""
VISIBLE_TEST = """x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
layer = Shift(2)
check_close(layer(x)[0], x + 1.0, what="forward")
assert float(layer(x)[1].abs().max()) == 0.0
"""
HIDDEN_TEST = """### BEGIN HIDDEN TESTS
from nf_course.grading_checks.change_of_variables import check_affine_log_density

check_bijector(Shift(2), torch.randn(4, 2))
### END HIDDEN TESTS
"""
ANSWER = """class Shift(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x + self.shift, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z - self.shift, z.new_zeros(z.shape[0])
"""


def _cell(source: str, **nbgrader) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def _notebook(answer: str) -> list[nbformat.NotebookNode]:
    """A submission: the given cell, the answer cell, a visible and a hidden test."""
    return [
        _cell(GIVEN),
        _cell(answer, grade_id="shift", solution=True, grade=False, locked=False),
        _cell(VISIBLE_TEST, grade_id="test_shift", solution=False, grade=True, locked=True),
        _cell(HIDDEN_TEST, grade_id="test_hidden", solution=False, grade=True, locked=True),
    ]


def _flags(answer: str, *, given: str | None = None) -> list[tuple[str, str]]:
    """``(cell, rule)`` of each flag when the answer cell holds ``answer`` (after ANSWER), and
    the given cell is replaced by ``given`` if one is passed."""
    cells = _notebook(ANSWER + "\n\n" + answer)
    instructor = [GIVEN, VISIBLE_TEST, HIDDEN_TEST]
    if given is not None:
        cells[0].source = given
    return [(flag.cell, flag.rule) for flag in analyse_notebook(cells, instructor)]


HOSTILE = {
    "setattr_on_checks": (
        "import nf_course.grading_checks as g\n"
        "[setattr(g, n, lambda *a, **k: None) for n in dir(g) if n.startswith('check_')]",
        "setattr",
    ),
    "setattr_as_value": ("patch = setattr\npatch(torch, 'allclose', max)", "setattr"),
    "module_attribute": ("torch.allclose = lambda *a, **k: True", "outside-write"),
    "class_attribute": ("torch.Tensor.__eq__ = lambda a, b: True", "dunder"),
    "tensor_method": ("torch.Tensor.allclose = lambda *a, **k: True", "outside-write"),
    "aliased_module": ("t = torch.testing\nt.assert_close = print", "outside-write"),
    "alias_in_list": ("for m in [torch]:\n    m.allclose = max", "outside-write"),
    "imported_as_other_name": (
        "from nf_course.grading_checks import change_of_variables as cv\n"
        "cv.check_affine_log_density = print",
        "outside-write",
    ),
    "checker_module_attribute": (
        "import nf_course.checks\nnf_course.checks.check_bijector = print",
        "outside-write",
    ),
    "sys_modules": (
        "import sys\nsys.modules['nf_course.grading_checks'] = None",
        "forbidden-module",
    ),
    "builtins": ("import builtins\nbuiltins.float = lambda x: 0.0", "forbidden-module"),
    "dunder_builtins": ("__builtins__.print = None", "dunder"),
    "dunder_import": ("g = __import__('nf_course.grading_checks')", "dynamic-code"),
    "importlib": ("import importlib\nimportlib.reload(torch)", "forbidden-module"),
    "rebind_check": ("def check_close(*args, **kwargs):\n    pass", "protected-name"),
    "rebind_by_assignment": ("check_bijector = lambda *a, **k: None", "protected-name"),
    "rebind_by_other_import": (
        "from nf_course.grading_checks import check_planar as check_close",
        "protected-name",
    ),
    "rebind_builtin": ("float = lambda value: 0.0", "protected-name"),
    "rebind_in_loop": ("for check_invertible in [print]:\n    pass", "protected-name"),
    "global_rebind": (
        "def reset():\n    global check_close\n    check_close = print\nreset()",
        "protected-name",
    ),
    "wrapper": (
        "import functools\nimport nf_course.checks as c\nold = c.check_bijector\n"
        "@functools.wraps(old)\ndef quiet(*a, **k):\n    try:\n        return old(*a, **k)\n"
        "    except AssertionError:\n        return None\nc.check_bijector = quiet",
        "outside-write",
    ),
    "checker_passed_on": (
        "def silence(function):\n    function.__code__ = (lambda *a, **k: None).__code__\n"
        "silence(check_close)",
        "checker-as-value",
    ),
    "code_object": ("check_close.__code__ = print.__code__", "dunder"),
    "globals_dict": ("globals()['check_close'] = print", "dynamic-code"),
    "vars_of_module": ("vars(torch)['allclose'] = max", "dynamic-code"),
    "exec": ("exec('check_close = print')", "dynamic-code"),
    "eval": ("eval('1')", "dynamic-code"),
    "compile": ("code = compile('x = 1', 'f', 'exec')", "dynamic-code"),
    "ipython_shell": ("get_ipython().set_custom_exc((Exception,), print)", "dynamic-code"),
    "ipython_magic": ("%load_ext autoreload", "dynamic-code"),
    "gc": ("import gc\ngc.get_referrers(check_close)", "forbidden-module"),
    "ctypes": ("import ctypes", "forbidden-module"),
    "inspect_frames": ("import inspect\ninspect.currentframe()", "forbidden-module"),
    "frame_attribute": (
        "def f():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
        "        return e.__traceback__.tb_frame.f_back",
        "frame-access",
    ),
    "getattr_dunder": ("d = getattr(torch, '__dict__')\nd['allclose'] = max", "getattr"),
    "getattr_computed": ("name = 'allclose'\nf = getattr(torch, name)", "getattr"),
    "type_of_tensor": ("type(torch.zeros(1)).allclose = max", "outside-write"),
    "type_alias": ("T = type(torch.zeros(1))\nT.allclose = max", "outside-write"),
    "module_dict_mutation": (
        "from nf_course.grading_checks.autoregressive import MASK_CASES\nMASK_CASES.clear()",
        "outside-mutation",
    ),
    "dict_method_on_module_data": (
        "from nf_course.grading_checks import autoregressive as ga\ndict.clear(ga.MASK_CASES)",
        "outside-mutation",
    ),
    "module_item_write": (
        "import nf_course.checks.derivatives as d\nd.TOLERANCES = {}",
        "outside-write",
    ),
    "private_import": ("from nf_course.checks.derivatives import _RTOL", "private-attribute"),
    "private_attribute": ("torch._C._set_grad_enabled(False)", "forbidden-module"),
    "torch_library": ("import torch.library", "forbidden-module"),
    "global_hook": (
        "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)",
        "outside-mutation",
    ),
    "torch_function": (
        "class Fake(torch.Tensor):\n    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n        return True",
        "dunder",
    ),
    "eq_override": ("class Always:\n    def __eq__(self, other):\n        return True", "dunder"),
    "self_not_self": ("def patch(self):\n    self.allclose = max\npatch(torch)", "outside-write"),
    "argument_attribute": ("def patch(module):\n    module.allclose = max", "outside-write"),
    "self_alias": (
        "class Holder:\n    def __init__(self):\n        self.m = torch\n"
        "    def patch(self):\n        self.m.allclose = max",
        "outside-write",
    ),
    "setattr_on_self_alias": (
        "class Holder:\n    def __init__(self):\n        setattr(self, 'm', torch)",
        "setattr",
    ),
    "instructor_object": ("layer.forward = lambda x: (x + 1.0, x[:, 0] * 0)", "outside-write"),
    "reads_solutions": ("print(open('../../solutions/x.ipynb').read())", "system-access"),
    "os_system": ("os.system('ls /')", "system-access"),
    "socket": ("import socket", "system-access"),
    "subprocess": ("import subprocess", "system-access"),
    "pathlib": ("from pathlib import Path", "system-access"),
    "star_import": ("from nf_course.grading_checks.planar import *", "protected-name"),
    "attached_then_called": (
        "def patch(self):\n    self.allclose = max\nShift.patch = patch\npatch(torch)",
        "outside-write",
    ),
    "magic_in_timeit": ("%timeit torch.allclose.__code__", "dunder"),
    "shell_escape": ("!cat ../../../solutions/*/*.ipynb", "dynamic-code"),
    "ipython_import": ("from IPython import get_ipython", "forbidden-module"),
    "matplotlib_to_numpy": (
        "import matplotlib.pyplot as plt\nplt.np.allclose = max",
        "outside-write",
    ),
    "module_passed_on": (
        "import nf_course\n\ndef clear(package):\n"
        "    package.grading_checks.autoregressive.MASK_CASES.clear()\nclear(nf_course)",
        "checker-as-value",
    ),
    "checker_package_passed_on": (
        "from nf_course import grading_checks\n\ndef f(m):\n    return m\nf(grading_checks)",
        "checker-as-value",
    ),
    "argument_deep_mutation": (
        "def clear(package):\n    package.grading_checks.autoregressive.MASK_CASES.clear()",
        "outside-mutation",
    ),
    "argument_private_hooks": (
        "def hook(nn):\n    nn.modules.module._global_forward_hooks[0] = print",
        "private-attribute",
    ),
    "sys_through_torch": ("torch.sys.modules.update({})", "forbidden-module"),
    "os_through_torch": ("torch.os.system('ls')", "forbidden-module"),
    "sys_by_getattr": ("getattr(torch, 'sys').modules.clear()", "getattr"),
    "mock": ("from unittest import mock", "forbidden-module"),
    "signal": ("import signal", "forbidden-module"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_snippet_is_flagged_with_its_rule(name: str) -> None:
    code, rule = HOSTILE[name]
    flags = _flags(code)
    assert flags, f"{name} was not flagged"
    assert all(cell == "shift" for cell, _ in flags), flags
    assert rule in {r for _, r in flags}, flags


def test_an_edited_given_cell_is_analysed() -> None:
    given = GIVEN.replace(
        "from nf_course.grading_checks import check_close",
        "def check_close(*args, **kwargs):\n    pass",
    )
    assert ("cell 1", "protected-name") in _flags("", given=given)
    assert _flags("", given=GIVEN) == []


LEGAL = {
    "setattr_on_self": (
        "class Stack(torch.nn.Module):\n    def __init__(self, n):\n        super().__init__()\n"
        "        for i in range(n):\n            setattr(self, f'layer{i}', Shift(2))\n"
        "        self.n = n\n    def forward(self, x):\n        total = x.new_zeros(x.shape[0])\n"
        "        for i in range(self.n):\n            x, ld = getattr(self, f'layer{i}')(x)\n"
        "            total = total + ld\n        return x, total"
    ),
    "module_list_and_cache": (
        "class Chain(torch.nn.Module):\n    scale: float = 1.0\n\n"
        "    def __init__(self, layers):\n        super().__init__()\n"
        "        self.layers = torch.nn.ModuleList(layers)\n        self.last_log_det = None\n"
        "    @property\n    def size(self) -> int:\n        return len(self.layers)\n"
        "    def forward(self, x):\n        log_det = x.new_zeros(x.shape[0])\n"
        "        for layer in self.layers:\n            x, ld = layer(x)\n"
        "            log_det = log_det + ld\n        self.last_log_det = log_det\n"
        "        return x, log_det\n"
        "    def __repr__(self):\n        return f'{type(self).__name__}({self.size})'"
    ),
    "distributions_and_weight_norm": (
        "from torch.distributions.transforms import AffineTransform\n"
        "from torch.nn.utils.parametrizations import weight_norm\n"
        "import torch.nn.functional as F\n"
        "def make(dim: int) -> torch.nn.Module:\n    net = weight_norm(torch.nn.Linear(dim, dim))\n"
        "    torch.nn.init.zeros_(net.bias)\n    with torch.no_grad():\n"
        "        net.bias.fill_(0.0)\n    return net\n"
        "t = AffineTransform(loc=torch.zeros(2), scale=2.0)\nact = F.softplus\n"
    ),
    "decorators_lambdas_closures": (
        "import functools\n\ndef logged(function):\n    @functools.wraps(function)\n"
        "    def wrapper(*args, **kwargs):\n        return function(*args, **kwargs)\n"
        "    return wrapper\n\n@logged\ndef square(x):\n    inner = lambda y: y * y\n"
        "    def helper(z):\n        return inner(z)\n    return helper(x)\n"
        "cache = {}\ncache['a'] = square(torch.ones(2))\nitems = []\nitems.append(1)\n"
    ),
    "in_place_on_own_and_arguments": (
        "def fill(out, x):\n    out[:, 0] = x[:, 0]\n    x = x.clone()\n    x[0] = 1.0\n"
        "    return out\nbuffer = torch.zeros(3, 2)\nbuffer[0, 0] = 1.0\nbuffer.add_(1.0)\n"
        "Shift.extra = 1\nShift.describe = lambda self: 'shift'\n"
    ),
    "reimports_and_debugging": (
        "import math\nimport torch\nfrom nf_course.grading_checks import check_close\n"
        "import warnings\nwarnings.warn('debug')\nprint(os.environ.get('HOME'))\n"
        "debug = Shift(2)\ndebug.shift.data.zero_()\nif __name__ == '__main__':\n    pass\n"
        "try:\n    import pyro\nexcept ImportError:\n    pyro = None\n"
    ),
    "dataclass_and_typing": (
        "from dataclasses import dataclass, field\nfrom typing import Callable\n\n@dataclass\n"
        "class Config:\n    dim: int = 2\n    sizes: list[int] = field(default_factory=list)\n"
        "    act: Callable[[torch.Tensor], torch.Tensor] = torch.tanh\n"
        "    def __post_init__(self):\n        self.sizes = [self.dim] * 2\n"
        "    @staticmethod\n    def make(dim: int) -> 'Config':\n        return Config(dim)\n"
        "    @classmethod\n    def default(cls) -> 'Config':\n        return cls()\n"
    ),
    "method_attached_later": (
        "def shift_inverse(self, z):\n    self.last_z = z\n    self.calls = self.calls + 1\n"
        "    return z - self.shift, z.new_zeros(z.shape[0])\n\n\nShift.inverse = shift_inverse\n"
        "Shift.calls = 0\n"
    ),
    "notebook_habits": (
        "from __future__ import annotations\n"
        "from IPython.display import display\nimport matplotlib.pyplot as plt\n"
        "plt.rcParams['figure.figsize'] = (4, 3)\ntorch.backends.cudnn.deterministic = True\n"
        "%matplotlib inline\n%timeit -n 3 Shift(2)(torch.ones(1, 2))\n"
        "display(Shift(2))\n"
    ),
    "pyro_and_distributions": (
        "import pyro.distributions.transforms as T\n\n"
        "class Wrapped(torch.nn.Module):\n    def __init__(self, dim):\n"
        "        super(Wrapped, self).__init__()\n"
        "        self.t = T.affine_coupling(dim, hidden_dims=[8])\n"
        "        self.base = torch.distributions.Normal(0.0, 1.0)\n        self.act = torch.tanh\n"
        "    def forward(self, x):\n        z = self.t(self.act(x))\n"
        "        return z, self.t.log_abs_det_jacobian(x, z)\n"
    ),
    "arguments_changed_in_place": (
        "def reset(layer, cache):\n    layer.cache.clear()\n    cache.append(layer)\n"
        "    layer.net.weight.data.zero_()\n    return cache\n"
    ),
    "syntax_error_is_a_mistake": "def broken(:\n    pass",
}


@pytest.mark.parametrize("name", sorted(LEGAL))
def test_legal_code_is_not_flagged(name: str) -> None:
    assert _flags(LEGAL[name]) == []


def test_a_test_cell_added_back_by_nbgrader_is_the_instructors() -> None:
    cells = _notebook(ANSWER)
    notice = "# This cell (id:test_shift) was missing from the submission. It was added back"
    cells[2].source = f"{notice} by nbgrader.\n\n{VISIBLE_TEST}"
    cells.insert(3, _cell("check_close = print  # a student's cell"))
    flags = analyse_notebook(cells, [GIVEN, VISIBLE_TEST, HIDDEN_TEST])
    assert [(f.cell, f.rule) for f in flags] == [("cell 4", "protected-name")]


def test_a_timed_cell_of_the_student_is_analysed_not_flagged() -> None:
    cells = _notebook(ANSWER)
    cells.insert(2, _cell("%%time\nlayer = Shift(2)\nout = layer(torch.ones(3, 2))\n"))
    assert analyse_notebook(cells, [GIVEN, VISIBLE_TEST, HIDDEN_TEST]) == []
    cells[2].source = "%%time\ntorch.allclose = max\n"
    flags = analyse_notebook(cells, [GIVEN, VISIBLE_TEST, HIDDEN_TEST])
    assert [(f.cell, f.rule) for f in flags] == [("cell 3", "outside-write")]


def test_penalize_zeroes_only_the_tests_after_the_first_flag() -> None:
    cells = _notebook(ANSWER)
    cells.insert(2, _cell("import sys"))
    cells.insert(0, _cell("pass", grade_id="early_test", solution=False, grade=True, locked=True))
    flags = analyse_notebook(cells, [GIVEN, VISIBLE_TEST, HIDDEN_TEST, "pass"])
    assert [(f.cell, f.line, f.rule) for f in flags] == [("cell 4", 1, "forbidden-module")]
    zeroed = penalize(cells, flags)
    assert zeroed == ["test_shift", "test_hidden"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 2
    assert all(e.ename == ERROR_NAME and "cell 4, line 1" in e.evalue for e in errors)
    assert "forbidden-module" in errors[0].evalue
    assert penalize(cells, []) == []


def _submissions(assignment: str) -> dict[str, dict[str, nbformat.NotebookNode]]:
    released = course.student_notebooks_from(course.REPOSITORY, assignment)
    solutions = course.reference_solutions(course.REPOSITORY, assignment)
    filled = {"reference": course.fill_solutions(released, solutions)}
    for rewrite in course.rewrites(assignment):
        filled[f"style_{rewrite.name}"] = course.fill_solutions(
            released, solutions, rewrite=rewrite
        )
    for mistake in course.mistakes(assignment):
        filled[mistake.name] = course.fill_solutions(released, solutions, mistake)
    return filled


@pytest.mark.parametrize("assignment", course.assignments())
def test_no_correct_submission_nor_mistake_is_flagged(assignment: str) -> None:
    submissions = _submissions(assignment)
    assert len(submissions) > 5
    for student, notebooks in submissions.items():
        for name, notebook in notebooks.items():
            source = nbformat.read(course.REPOSITORY / "solutions" / assignment / name, 4)
            flags = analyse_notebook(notebook.cells, instructor_sources(source))
            assert flags == [], f"{assignment}, {student}: {[str(f) for f in flags]}"


def test_preprocessor_records_the_flags_and_zeroes_the_tests(tmp_path) -> None:
    source = nbformat.v4.new_notebook(cells=_notebook("raise NotImplementedError()"))
    (tmp_path / "solutions" / "a1").mkdir(parents=True)
    nbformat.write(source, str(tmp_path / "solutions" / "a1" / "nb.ipynb"))
    submission = nbformat.v4.new_notebook(cells=_notebook(ANSWER + "\ntorch.allclose = max\n"))
    preprocessor = FlagTampering(
        source_directory=str(tmp_path / "solutions"), report_directory=str(tmp_path / "tamper")
    )
    resources = {"nbgrader": {"assignment": "a1", "notebook": "nb", "student": "eve"}}
    preprocessor.preprocess(submission, resources)
    errors = [c for c in submission.cells if any(o.output_type == "error" for o in c.outputs)]
    assert [c.metadata["nbgrader"]["grade_id"] for c in errors] == ["test_shift", "test_hidden"]
    reason = read_flags(tmp_path / "tamper", "a1", "eve")
    assert "nb: shift, line 12: [outside-write]" in reason and "test_shift, test_hidden" in reason
    assert read_flags(tmp_path / "tamper", "a1", "bob") == ""
    clear_flags(tmp_path / "tamper", "a1", "eve")
    assert read_flags(tmp_path / "tamper", "a1", "eve") == ""
