"""Hostile submissions of assignment 01, graded end to end by ``tests/test_hostile.py``.

Each :class:`Hostile` is what a student trying to cheat or to do harm could submit: checks
rewritten in the kernel (caught by :mod:`nf_course.tamper`), course files read or written,
the network, processes, memory and disk (stopped by the sandbox of :mod:`nf_course.sandbox`).
Sources are templates: ``{course}`` becomes the course root, ``{repository}`` the repository
(the ``nf_course`` package the kernel imports), ``{port}`` a port the test listens on, and
``{assignment}`` the assignment and ``{reference}`` the reference solution of the cell.
"""

from __future__ import annotations

from dataclasses import dataclass

ASSIGNMENT = "01_change_of_variables"
SOLUTION_CELLS = ("01_affine_1d", "01_exp_normal", "01_affine_bijector", "01_linear_log_density")


@dataclass(frozen=True)
class Hostile:
    """One hostile submission.

    Attributes:
        name: the fake student's name.
        tries: what the submission tries, in an instructor's words.
        cells: ``grade_id`` of a solution cell -> its source (a template, see the module);
            the other solution cells hold :data:`WRONG` answers if ``wrong`` else the reference.
        score: the total score it must get.
        flag: the rule the tampering flag must name ("" when no flag is expected).
        failure: a regular expression the student's feedback must match when the sandbox
            stopped the code (the error of the cell it stopped).
        given: a replacement for the given cell that imports the checks (unmarked, so a
            student can edit it), or "" to keep it.
        wrong: whether the cells the entry does not write get wrong answers (no work done).
    """

    name: str
    tries: str
    cells: dict[str, str]
    score: float
    flag: str = ""
    failure: str = ""
    given: str = ""
    wrong: bool = True


# Answers that do no work: each returns its input.
WRONG = {
    "01_affine_1d": "def affine_log_density(x, scale, shift, base_log_prob):\n    return x\n",
    "01_exp_normal": "def exp_normal_log_density(x):\n    return x\n",
    "01_affine_bijector": """class AffineBijector(torch.nn.Module):
    def __init__(self, A, b):
        super().__init__()
        self.A = torch.nn.Parameter(A.clone())
        self.b = torch.nn.Parameter(b.clone())

    def forward(self, x):
        return x, x.new_zeros(x.shape[0])

    def inverse(self, z):
        return z, z.new_zeros(z.shape[0])
""",
    "01_linear_log_density": "def linear_log_density(x, A, b):\n    return x[:, 0]\n",
}

_NO_OP = "lambda *args, **kwargs: None"
_CHECK_MODULES = (
    "import nf_course.checks\nimport nf_course.grading_checks\n"
    "import nf_course.grading_checks.change_of_variables\n"
    "MODULES = [nf_course.checks, nf_course.grading_checks, "
    "nf_course.grading_checks.change_of_variables]\n"
)

CATALOGUE = [
    Hostile(
        name="setattr_no_ops",
        tries="setattr of a no-op on every check_* of the checker modules and the notebook",
        cells={
            "01_affine_1d": _CHECK_MODULES
            + "for module in MODULES:\n"
            + "    for name in dir(module):\n"
            + "        if name.startswith('check_'):\n"
            + f"            setattr(module, name, {_NO_OP})\n"
            + "import __main__\n"
            + "for name in ('check_close', 'check_invertible', 'check_log_det'):\n"
            + f"    setattr(__main__, name, {_NO_OP})\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="setattr",
    ),
    Hostile(
        name="sys_modules",
        tries="fake checker modules put into sys.modules before the hidden tests import them",
        cells={
            "01_affine_1d": "import sys\nimport types\n\n"
            "fake = types.ModuleType('nf_course.grading_checks.change_of_variables')\n"
            "for name in ('check_affine_log_density', 'check_exp_normal_log_density',\n"
            "             'check_affine_bijector', 'check_linear_log_density'):\n"
            f"    setattr(fake, name, {_NO_OP})\n"
            "sys.modules['nf_course.grading_checks.change_of_variables'] = fake\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="forbidden-module",
    ),
    Hostile(
        name="builtins_import",
        tries="builtins.__import__ replaced: importing a grading check returns a no-op",
        cells={
            "01_affine_1d": "import builtins\n\n_real = builtins.__import__\n\n"
            "class _Fake:\n    def __getattr__(self, name):\n"
            f"        return {_NO_OP}\n\n"
            "def _import(name, *args, **kwargs):\n"
            "    if name.startswith('nf_course.grading_checks'):\n        return _Fake()\n"
            "    return _real(name, *args, **kwargs)\n\n"
            "builtins.__import__ = _import\n" + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="forbidden-module",
    ),
    Hostile(
        name="rebinds_given_names",
        tries="the given import cell edited: check_close & co. defined as no-ops, the hidden "
        "checks replaced by attribute assignment",
        cells={},
        given="import math\nimport os\n\nimport torch\n\n"
        "import nf_course.grading_checks.change_of_variables as hidden\n\n"
        "def check_close(*args, **kwargs):\n    pass\n\n"
        "check_invertible = check_log_det = check_close\n"
        "hidden.check_affine_log_density = hidden.check_exp_normal_log_density = check_close\n"
        "hidden.check_affine_bijector = hidden.check_linear_log_density = check_close\n"
        "torch.set_default_dtype(torch.float64)\nGRADING = 'NBGRADER_EXECUTION' in os.environ\n",
        score=0.0,
        flag="protected-name",
    ),
    Hostile(
        name="wraps_checks",
        tries="each hidden check wrapped in a function that swallows its failure",
        cells={
            "01_affine_1d": "import functools\n"
            "import nf_course.grading_checks.change_of_variables as hidden\n\n"
            "def forgiving(check):\n    @functools.wraps(check)\n"
            "    def wrapper(*args, **kwargs):\n        try:\n            check(*args, **kwargs)\n"
            "        except Exception:\n            pass\n    return wrapper\n\n"
            "for name in ('check_affine_log_density', 'check_exp_normal_log_density',\n"
            "             'check_affine_bijector', 'check_linear_log_density'):\n"
            "    hidden.__dict__[name] = forgiving(hidden.__dict__[name])\n"
            "hidden.check_affine_bijector = forgiving(hidden.check_affine_bijector)\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="outside-write",
    ),
    Hostile(
        name="patches_torch",
        tries="torch's comparisons patched to always agree (allclose, isclose, assert_close, "
        "Tensor methods)",
        cells={
            "01_affine_1d": "torch.allclose = lambda *args, **kwargs: True\n"
            "torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)\n"
            "torch.testing.assert_close = lambda *args, **kwargs: None\n"
            "torch.Tensor.allclose = lambda *args, **kwargs: True\n" + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="outside-write",
    ),
    Hostile(
        name="swallows_errors_late",
        tries="IPython's custom exception handler silences every failing test after the last "
        "answer (the earlier answers are correct and keep their points)",
        cells={
            "01_linear_log_density": "get_ipython().set_custom_exc((Exception,), "
            "lambda shell, etype, value, tb, tb_offset=None: None)\n"
            + WRONG["01_linear_log_density"],
        },
        score=8.0,
        flag="dynamic-code",
        wrong=False,
    ),
    Hostile(
        name="reads_solutions",
        tries="prints the instructor's notebook (reference solutions, hidden tests) into its "
        "output, to get it in the feedback",
        cells={
            "01_affine_1d": "for path in ['{course}/solutions/{assignment}/{assignment}.ipynb',\n"
            "             '../../../solutions/{assignment}/{assignment}.ipynb']:\n"
            "    try:\n        print(open(path).read())\n"
            "    except OSError as error:\n        print('blocked:', error)\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="reads_gradebook",
        tries="prints the gradebook (it holds the hidden tests' source)",
        cells={
            "01_affine_1d": "try:\n"
            "    print(open('{course}/grading/gradebook.db', 'rb').read().decode('latin-1'))\n"
            "except OSError as error:\n    print('blocked:', error)\n" + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="reads_other_student",
        tries="lists the other students' submissions and prints the reference student's",
        cells={
            "01_affine_1d": "import os\n"
            "for folder in ['{course}/grading/submitted', '{course}/grading/autograded']:\n"
            "    try:\n        print(os.listdir(folder))\n"
            "    except OSError as error:\n        print('blocked:', error)\n"
            "try:\n    print(open('{course}/grading/submitted/reference/{assignment}/"
            "{assignment}.ipynb').read())\n"
            "except OSError as error:\n    print('blocked:', error)\n" + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="writes_course_and_package",
        tries="writes files into the course root, solutions/, another student's folder and the "
        "nf_course package that grades everyone",
        cells={
            "01_affine_1d": "targets = ['{course}/pwned.txt', '{course}/solutions/pwned.txt',\n"
            "           '{course}/grading/submitted/reference/pwned.txt',\n"
            "           '{repository}/nf_course/hostile_probe.py']\n"
            "for target in targets:\n    try:\n"
            "        with open(target, 'w') as handle:\n"
            "            handle.write('raise SystemExit')\n"
            "    except OSError as error:\n        print('blocked:', error)\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="network",
        tries="opens a TCP connection to a port the host listens on (127.0.0.1)",
        cells={
            "01_affine_1d": "import socket\n"
            "try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'hi')\n"
            "except OSError as error:\n    print('blocked:', error)\n" + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="fork_bomb",
        tries="forks hundreds of processes (each sleeps, so the bomb stays bounded outside a "
        "sandbox)",
        cells={
            "01_affine_1d": "import os\nimport time\n\nchildren = 0\n"
            "try:\n    for _ in range(600):\n        if os.fork() == 0:\n"
            "            time.sleep(5)\n            os._exit(0)\n        children += 1\n"
            "except OSError as error:\n    print('blocked after', children, 'forks:', error)\n"
            + WRONG["01_affine_1d"],
        },
        score=0.0,
        flag="system-access",
    ),
    Hostile(
        name="memory",
        tries="allocates and fills 8 GiB before the last answer (no flag: allocating is legal; "
        "the sandbox's memory limit stops it and only that answer's tests are lost)",
        cells={"01_linear_log_density": "hog = torch.ones(2**30)\n{reference}"},
        score=8.0,
        failure=r"allocate|MemoryError",
        wrong=False,
    ),
    Hostile(
        name="fills_disk",
        tries="writes 2 GiB of checkpoints into its working folder before the last answer (no "
        "flag: torch.save is legal; the sandbox's disk limit stops it)",
        cells={
            "01_linear_log_density": "for i in range(16):\n"
            "    torch.save(torch.zeros(2**24), f'filler{i}.pt')\n{reference}"
        },
        score=8.0,
        failure=r"iostream error|File too large|No space left",
        wrong=False,
    ),
]
