"""The rules of the tampering analysis: one ``ast`` pass over one cell a student could edit.

:func:`analyse_cell` returns a :class:`Finding` (line, rule, detail) for each construct that can
reach the code or data the graded tests rely on; :mod:`nf_course.tamper` decides which cells
are analysed and what a finding costs. Every rule denies by default: a construct is allowed
only where it cannot touch an object the student's own code did not create.

==================  =================================================================
rule                what it flags
==================  =================================================================
forbidden-module    importing a module that reaches the interpreter, the kernel or
                    torch's dispatcher (``sys``, ``builtins``, ``importlib``, ``gc``,
                    ``inspect``, ``ctypes``, ``IPython``, ``torch.library``, ...)
system-access       files, processes and the network (``open``, ``os.system``,
                    ``socket``, ``subprocess``, ...): the sandbox stops them; the flag
                    records the attempt
dynamic-code        ``exec``, ``eval``, ``compile``, ``__import__``, ``globals``,
                    ``locals``, ``vars``, ``get_ipython``, IPython magics
setattr             ``setattr``/``delattr`` on anything but ``self``
getattr             ``getattr`` on anything but ``self``, unless the name is a literal
                    that is neither private nor a dunder
dunder              dunder attributes and names other than ``__init__``, ``__name__``,
                    ``__qualname__``, ``__doc__``; special methods other than a few
                    harmless ones (``__torch_function__``, ``__eq__``... are refused)
frame-access        frames and code objects (``f_locals``, ``tb_frame``, ``gi_frame``...)
private-attribute   ``_private`` attributes of objects the student did not create
outside-write       assigning, augmenting or deleting an attribute or item of an object
                    the student did not create (a module, a class, what a test cell
                    defined), or an attribute of a function's argument
outside-mutation    mutating methods (``update``, ``clear``, ``append``, ``fill_``...)
                    called on such objects; global hooks (``register_module_*``)
protected-name      rebinding at the top level a name that the instructor's cells import
                    or define, or a builtin that they use (importing the same object again
                    is allowed)
checker-as-value    a name imported from ``nf_course.checks`` or ``nf_course.grading_checks``
                    used other than by calling it, or a module bound by ``import`` used other
                    than through its attributes (stored, passed on, returned)
==================  =================================================================

Objects are classified by where their name was bound: ``own`` (made by the student's code: a
class, a function, the result of a call), ``self`` (the first parameter of a method), ``param``
(another parameter) and ``outside`` (imports, names bound by the instructor's cells, builtins,
and aliases of those, e.g. ``t = torch`` or ``T = type(x)``).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nf_course.tamper_names import NotebookNames, import_bindings, target_names

__all__ = ["Finding", "analyse_cell", "top_level_kinds"]

FORBIDDEN_MODULES = (
    "sys builtins importlib imp gc ctypes inspect types pickle marshal dill cloudpickle copyreg "
    "code codeop runpy pkgutil site traceback signal atexit unittest.mock mock IPython ipykernel "
    "jupyter_client zmq operator torch.library torch.overrides torch.utils.cpp_extension "
    "torch._C torch._dynamo torch.utils._python_dispatch"
).split()
SYSTEM_MODULES = (
    "socket ssl subprocess multiprocessing concurrent shutil pathlib tempfile glob urllib http "
    "ftplib smtplib requests asyncio io codecs fcntl mmap resource pty nbformat sqlite3"
).split()
ALLOWED_MODULES = ("IPython.display",)
# modules that other modules hold as attributes (``torch.sys``, ``numpy.os``): reached that way
# they are flagged too
REEXPORTED = {"sys", "builtins", "importlib", "gc", "ctypes", "inspect", "os", "pickle", "socket"}
# IPython magics that only time or capture code of the cell (which is analysed like the rest)
SAFE_MAGICS = {"time", "timeit", "capture", "matplotlib"}
# global settings a notebook may change: plotting style, cuDNN's determinism
SAFE_TARGETS = {
    "matplotlib.rcParams",
    "matplotlib.pyplot.rcParams",
    "torch.backends.cudnn.deterministic",
    "torch.backends.cudnn.benchmark",
}
SAFE_OS_ATTRIBUTES = {"environ", "path", "getenv", "cpu_count", "sep", "linesep", "name"}
DYNAMIC = {
    "exec",
    "eval",
    "compile",
    "__import__",
    "globals",
    "locals",
    "vars",
    "breakpoint",
    "get_ipython",
    "open",
    "memoryview",
}
ALLOWED_DUNDER_ATTRIBUTES = {"__init__", "__name__", "__qualname__", "__doc__"}
ALLOWED_DUNDER_NAMES = {"__name__"}
ALLOWED_SPECIAL_METHODS = {
    "__init__",
    "__repr__",
    "__str__",
    "__len__",
    "__iter__",
    "__next__",
    "__getitem__",
    "__contains__",
    "__call__",
    "__post_init__",
}
FRAME_ATTRIBUTES = {
    "f_locals",
    "f_globals",
    "f_builtins",
    "f_back",
    "f_code",
    "f_trace",
    "tb_frame",
    "tb_next",
    "gi_frame",
    "gi_code",
    "cr_frame",
    "ag_frame",
    "co_code",
    "co_consts",
    "co_names",
}
MUTATING_METHODS = {
    "update",
    "clear",
    "pop",
    "popitem",
    "setdefault",
    "append",
    "extend",
    "insert",
    "remove",
    "discard",
    "add",
    "sort",
    "reverse",
}
CHECKER_PACKAGES = ("nf_course.checks", "nf_course.grading_checks")
KINDS = ("own", "self", "param", "outside")  # from harmless to dangerous


def _worst(*kinds: str) -> str:
    return max(kinds, key=KINDS.index, default="own")


@dataclass(frozen=True)
class Finding:
    """One flagged construct: ``line`` in the cell (1-based), the ``rule`` and a ``detail``."""

    line: int
    rule: str
    detail: str


def _under(module: str, packages: list[str] | tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class _Scope:
    """Names bound in one function (or the cell's top level) and their kinds."""

    def __init__(self, parent: _Scope | None, kinds: dict[str, str], self_name: str | None):
        self.parent = parent
        self.kinds = kinds
        self.self_name = self_name

    def kind(self, name: str, notebook: NotebookNames) -> str:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.kinds:
                return scope.kinds[name]
            scope = scope.parent
        return notebook.kinds.get(name, "outside")


class _Analyser(ast.NodeVisitor):
    """Walks one cell; ``findings`` collects what the rules flag."""

    def __init__(self, notebook: NotebookNames, self_aliases: set[str]):
        self.notebook = notebook
        self.findings: list[Finding] = []
        self.scope = _Scope(None, {}, None)
        self.class_depth = 0  # > 0 directly inside a class body
        self.parents: dict[ast.AST, ast.AST] = {}
        self.modules = dict(notebook.modules)
        self.module_names = set(notebook.module_names)
        # attributes of `self` that hold outside objects (`self.m = torch`), found by a first
        # pass over the cell
        self.self_aliases = self_aliases

    # ------------------------------------------------------------------ helpers

    def flag(self, node: ast.AST, rule: str, detail: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 0), rule, detail))

    def kind_of(self, node: ast.expr) -> str:
        """How far ``node``'s value may reach: ``own``, ``self``, ``param`` or ``outside``."""
        if isinstance(node, ast.Name):
            return self.scope.kind(node.id, self.notebook)
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("__"):
                return "outside"
            if self.is_self(node.value) and node.attr in self.self_aliases:
                return "outside"
            return self.kind_of(node.value)
        if isinstance(node, ast.Subscript):
            return self.kind_of(node.value)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in ("type", "getattr"):
                if node.func.id == "type" or not node.args:
                    return "outside"
                return self.kind_of(node.args[0])
            return "own"
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return _worst(*(self.kind_of(e) for e in node.elts))
        if isinstance(node, ast.Dict):
            return _worst(*(self.kind_of(v) for v in node.values if v is not None))
        if isinstance(node, ast.IfExp):
            return _worst(self.kind_of(node.body), self.kind_of(node.orelse))
        if isinstance(node, ast.BoolOp):
            return _worst(*(self.kind_of(v) for v in node.values))
        if isinstance(node, (ast.Starred, ast.NamedExpr)):
            return self.kind_of(node.value)
        return "own"

    def bind(self, target: ast.expr, kind: str) -> None:
        for name in target_names(target):
            self.scope.kinds[name] = _worst(self.scope.kinds.get(name, "own"), kind)

    def at_top_level(self) -> bool:
        return self.scope.parent is None and self.class_depth == 0

    def is_self(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == self.scope.self_name

    def check_top_level_binding(self, node: ast.stmt, name: str, how: str) -> None:
        if name == "*":
            self.flag(node, "protected-name", "a star import may rebind the names tests use")
        if not self.at_top_level() or name not in self.notebook.protected:
            return
        allowed = self.notebook.protected[name]
        if how == "import" and isinstance(node, (ast.Import, ast.ImportFrom)):
            bound = {(m, a) for n, m, a in import_bindings(node) if n == name}
            if bound <= allowed and allowed:
                return
        self.flag(
            node,
            "protected-name",
            f"rebinds `{name}`, which the notebook's given or test cells "
            + ("import" if allowed else "define or use"),
        )

    # ------------------------------------------------------------------ imports

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_module(node, alias.name)
        self.bind_imports(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            self.check_module(node, f"{module}.{alias.name}")
            if alias.name.startswith("_"):
                self.flag(node, "private-attribute", f"imports the private `{alias.name}`")
        self.bind_imports(node)

    def bind_imports(self, node: ast.Import | ast.ImportFrom) -> None:
        for name, module, attribute in import_bindings(node):
            self.modules[name] = module if attribute is None else f"{module}.{attribute}"
            if attribute is None:
                self.module_names.add(name)
            self.scope.kinds[name] = "outside"
            self.check_top_level_binding(node, name, "import")

    def check_module(self, node: ast.stmt, module: str) -> None:
        if _under(module, ALLOWED_MODULES):
            return
        if _under(module, FORBIDDEN_MODULES):
            self.flag(node, "forbidden-module", f"imports `{module}`")
        elif _under(module, SYSTEM_MODULES) or (module.startswith("os.") and module != "os.path"):
            self.flag(node, "system-access", f"imports `{module}`")

    # ------------------------------------------------------------------ definitions

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.check_special_name(node, node.name)
        self.check_top_level_binding(node, node.name, "def")
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.scope.kinds[node.name] = _worst(self.scope.kinds.get(node.name, "own"), "own")
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
        kinds = {a.arg: "param" for a in arguments}
        positional = [*node.args.posonlyargs, *node.args.args]
        is_static = any(
            isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list
        )
        method = self.class_depth or (self.at_top_level() and node.name in self.notebook.methods)
        self_name = positional[0].arg if method and positional and not is_static else None
        if self_name:
            kinds[self_name] = "self"
        outer, depth = self.scope, self.class_depth
        self.scope, self.class_depth = _Scope(outer, kinds, self_name), 0
        for statement in node.body:
            self.visit(statement)
        if self_name and self.scope.kinds.get(self_name) != "self":
            self.flag(node, "outside-write", f"rebinds `{self_name}` inside a method")
        self.scope, self.class_depth = outer, depth

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        outer = self.scope
        self.scope = _Scope(outer, {a.arg: "param" for a in arguments}, None)
        self.visit(node.body)
        self.scope = outer

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_top_level_binding(node, node.name, "def")
        for expression in [*node.bases, *node.keywords, *node.decorator_list]:
            self.visit(expression)
        self.scope.kinds[node.name] = _worst(self.scope.kinds.get(node.name, "own"), "own")
        self.class_depth += 1
        for statement in node.body:
            if isinstance(statement, (ast.Assign, ast.AnnAssign)):
                targets = (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                for name in (n for t in targets for n in target_names(t)):
                    self.check_special_name(statement, name)
            self.visit(statement)
        self.class_depth -= 1

    def check_special_name(self, node: ast.AST, name: str) -> None:
        dunder = name.startswith("__") and name.endswith("__")
        if dunder and name not in ALLOWED_SPECIAL_METHODS:
            self.flag(node, "dunder", f"defines the special name `{name}`")

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            if name in self.notebook.protected:
                self.flag(node, "protected-name", f"declares `{name}` global")
            self.scope.kinds[name] = self.notebook.kinds.get(name, "outside")

    visit_Nonlocal = visit_Global

    # ------------------------------------------------------------------ bindings

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        kind = self.kind_of(node.value)
        for target in node.targets:
            self.store(target, node)
            self.bind(target, kind)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.store(node.target, node)
            self.bind(node.target, self.kind_of(node.value))
        self.visit(node.annotation)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        self.store(node.target, node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.store(target, node)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.store(node.target, node)
        self.bind(node.target, self.kind_of(node.iter))
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self.bind(node.target, self.kind_of(node.iter))
        for condition in node.ifs:
            self.visit(condition)

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.store(item.optional_vars, node)
                self.bind(item.optional_vars, "own")
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.store(node.target, node)
        self.bind(node.target, self.kind_of(node.value))

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.scope.kinds[node.name] = "own"
            if self.at_top_level() and node.name in self.notebook.protected:
                self.flag(node, "protected-name", f"rebinds `{node.name}`")
        for statement in node.body:
            self.visit(statement)

    def store(self, target: ast.expr, statement: ast.stmt) -> None:
        """Check a store (or deletion) target: names at the top level, attributes and items."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.store(element, statement)
            return
        if isinstance(target, ast.Starred):
            self.store(target.value, statement)
            return
        if isinstance(target, ast.Name):
            self.check_top_level_binding(statement, target.id, "assign")
            return
        if not isinstance(target, (ast.Attribute, ast.Subscript)):
            return
        self.visit_chain(target)
        link: ast.expr = target
        through_getattr = False
        while isinstance(link, (ast.Attribute, ast.Subscript, ast.Call)):
            if isinstance(link, ast.Call):
                if not (isinstance(link.func, ast.Name) and link.func.id == "getattr"):
                    break
                through_getattr = True
                link = link.args[0] if link.args else link.func
            else:
                link = link.value
        kind = self.kind_of(target.value)
        what = ast.unparse(target)
        setting = target if isinstance(target, ast.Attribute) else target.value
        if self.module_root(setting) in SAFE_TARGETS:
            return
        value = getattr(statement, "value", None)
        if (
            isinstance(target, ast.Attribute)
            and self.is_self(target.value)
            and isinstance(value, (ast.Name, ast.Attribute))
            and self.kind_of(value) == "outside"
        ):
            self.self_aliases.add(target.attr)
        if kind == "outside" or through_getattr:
            self.flag(
                statement,
                "outside-write",
                f"writes `{what}`, which belongs to an object your code did not create",
            )
        elif kind == "param" and isinstance(target, ast.Attribute):
            self.flag(statement, "outside-write", f"sets the attribute `{what}` of an argument")

    # ------------------------------------------------------------------ expressions

    def visit_chain(self, node: ast.expr) -> None:
        """Visit the parts of a store target below its last attribute or item."""
        if isinstance(node, ast.Attribute):
            self.check_attribute(node)
            self.visit(node.value)
        elif isinstance(node, ast.Subscript):
            self.visit(node.value)
            self.visit(node.slice)

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        local = self.scope.kind(name, NotebookNames()) != "outside"
        if name in DYNAMIC and not local:
            rule = "system-access" if name == "open" else "dynamic-code"
            self.flag(node, rule, f"uses `{name}`")
        elif name.startswith("__") and name not in ALLOWED_DUNDER_NAMES:
            self.flag(node, "dunder", f"uses the name `{name}`")
        if name in self.notebook.checkers and not local and not self.is_called(node):
            self.flag(node, "checker-as-value", f"uses the check `{name}` as a value")
        elif name in self.module_names and not local and isinstance(node.ctx, ast.Load):
            parent = self.parents.get(node)
            if not (isinstance(parent, ast.Attribute) and parent.value is node):
                self.flag(node, "checker-as-value", f"uses the module `{name}` as a value")

    def is_called(self, node: ast.expr) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Call) and parent.func is node

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_attribute(node)
        self.visit(node.value)

    def check_attribute(self, node: ast.Attribute) -> None:
        attribute = node.attr
        kind = self.kind_of(node.value)
        if attribute.startswith("__") and attribute.endswith("__"):
            if attribute not in ALLOWED_DUNDER_ATTRIBUTES:
                self.flag(node, "dunder", f"uses the attribute `{attribute}`")
        elif attribute in FRAME_ATTRIBUTES:
            self.flag(node, "frame-access", f"uses the frame attribute `{attribute}`")
        elif attribute.startswith("_") and (kind == "outside" or self.deep_argument(node, kind)):
            self.flag(node, "private-attribute", f"uses `{ast.unparse(node)}`")
        elif attribute.startswith("register_module_"):
            self.flag(node, "outside-mutation", f"installs a global hook `{attribute}`")
        elif (kind == "outside" and self.mutates(node)) or (
            self.deep_argument(node, kind, 2) and attribute in MUTATING_METHODS
        ):
            self.flag(node, "outside-mutation", f"changes `{ast.unparse(node.value)}` in place")
        if kind == "outside" and self.module_root(node.value) == "os":
            if attribute not in SAFE_OS_ATTRIBUTES:
                self.flag(node, "system-access", f"uses `os.{attribute}`")
        dotted = self.module_root(node)
        if dotted is not None and _under(dotted, FORBIDDEN_MODULES):
            self.flag(node, "forbidden-module", f"uses `{dotted}`")
        elif dotted is not None and any(part in REEXPORTED for part in dotted.split(".")[1:]):
            self.flag(node, "forbidden-module", f"reaches a system module through `{dotted}`")

    @staticmethod
    def deep_argument(node: ast.Attribute, kind: str, depth: int = 1) -> bool:
        """An attribute reached from an argument through ``depth`` attributes or more
        (``module.nn.modules._hooks``): what an argument holds is not the function's to change."""
        chain, found = node.value, 0
        while isinstance(chain, (ast.Attribute, ast.Subscript)):
            found += isinstance(chain, ast.Attribute)
            chain = chain.value
        return kind == "param" and found >= depth

    def module_root(self, node: ast.expr) -> str | None:
        """``node`` as a dotted path when it is a chain of names rooted at an import, the
        import's module in place of its local name (``F.relu`` -> ``torch.nn.functional.relu``).
        """
        chain, names = node, []
        while isinstance(chain, ast.Attribute):
            names.append(chain.attr)
            chain = chain.value
        if not isinstance(chain, ast.Name) or chain.id not in self.modules:
            return None
        if self.scope.kind(chain.id, self.notebook) != "outside":
            return None
        return ".".join([self.modules[chain.id], *reversed(names)])

    def mutates(self, node: ast.Attribute) -> bool:
        """A mutating method of an outside object; in-place ``*_`` functions of a library's
        lowercase modules (``torch.nn.init.normal_``) are not."""
        attribute = node.attr
        in_place = attribute.endswith("_") and not attribute.startswith("_")
        if attribute not in MUTATING_METHODS and not in_place:
            return False
        text = self.module_root(node.value)
        if text in SAFE_TARGETS:
            return False
        library = text is not None and text.islower() and not text.startswith("nf_course")
        return not library

    def safe_magic(self, node: ast.Call) -> bool:
        """``%time``, ``%timeit``, ``%%capture``, ``%matplotlib``: the code they run is
        analysed here; any other magic is IPython's ``get_ipython()`` and flagged."""
        function = node.func
        if not (
            isinstance(function, ast.Attribute)
            and function.attr in ("run_line_magic", "run_cell_magic")
            and isinstance(function.value, ast.Call)
            and isinstance(function.value.func, ast.Name)
            and function.value.func.id == "get_ipython"
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            and node.args
            and node.args[0].value in SAFE_MAGICS
        ):
            return False
        if node.args[0].value == "matplotlib":
            return True
        codes = [a.value for a in node.args[1:]]
        if function.attr == "run_line_magic":  # options first: %timeit -n 10 -r 3 f(x)
            codes = [re.sub(r"^\s*(-[a-z]+\s*\d*\s*)*", "", code) for code in codes]
        elif codes:
            codes = codes[1:]  # the cell magic's own line holds options, the body is code
        for code in codes:
            try:
                tree = ast.parse(code)
            except SyntaxError:
                return False
            for child in ast.walk(tree):
                for grandchild in ast.iter_child_nodes(child):
                    self.parents[grandchild] = child
            for statement in tree.body:
                self.visit(statement)
        return True

    def visit_Call(self, node: ast.Call) -> None:
        if self.safe_magic(node):
            return
        function = node.func
        if (
            isinstance(function, ast.Name)
            and self.scope.kind(function.id, NotebookNames()) == "outside"
        ):
            name = function.id
            first = node.args[0] if node.args else None
            if name in ("setattr", "delattr") and not (first is not None and self.is_self(first)):
                self.flag(node, "setattr", f"calls `{name}` on something other than `self`")
            elif (
                name == "setattr" and len(node.args) > 2 and self.kind_of(node.args[2]) == "outside"
            ):
                if isinstance(node.args[2], (ast.Name, ast.Attribute)):
                    self.flag(node, "setattr", "stores an imported object on `self` by name")
            if name == "getattr" and not (first is not None and self.is_self(first)):
                literal = node.args[1] if len(node.args) > 1 else None
                plain = (
                    isinstance(literal, ast.Constant)
                    and isinstance(literal.value, str)
                    and not literal.value.startswith("_")
                    and literal.value not in REEXPORTED
                )
                if not plain:
                    self.flag(node, "getattr", "calls `getattr` with a computed or private name")
        self.generic_visit(node)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp) -> None:
        for generator in node.generators:
            self.visit(generator)
        self.visit(node.elt)

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        for generator in node.generators:
            self.visit(generator)
        self.visit(node.key)
        self.visit(node.value)


def _setattr_references(analyser: _Analyser, tree: ast.Module) -> None:
    """``setattr``/``delattr`` named other than in a call (``f = setattr``) escape the call
    check: flag them."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in ("setattr", "delattr"):
            parent = analyser.parents.get(node)
            if not (isinstance(parent, ast.Call) and parent.func is node):
                analyser.flag(node, "setattr", f"uses `{node.id}` as a value")


def _run(tree: ast.Module, notebook: NotebookNames, self_aliases: set[str]) -> _Analyser:
    analyser = _Analyser(notebook, self_aliases)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            analyser.parents[child] = node
    for statement in tree.body:
        analyser.visit(statement)
    _setattr_references(analyser, tree)
    return analyser


def top_level_kinds(tree: ast.Module, notebook: NotebookNames) -> dict[str, str]:
    """``name -> kind`` of what one cell binds at the top level (``t = torch``: outside)."""
    return dict(_run(tree, notebook, set()).scope.kinds)


def analyse_cell(tree: ast.Module, notebook: NotebookNames) -> list[Finding]:
    """Every finding of the rules in one cell parsed by :func:`~nf_course.tamper_names.parse_cell`.

    Two passes: the first finds the attributes of ``self`` that hold imported objects, so that
    a method may use one that another method stores.
    """
    self_aliases: set[str] = set()
    _run(tree, notebook, self_aliases)
    analyser = _run(tree, notebook, self_aliases)
    unique = {(f.line, f.rule, f.detail): f for f in analyser.findings}
    return sorted(unique.values(), key=lambda f: (f.line, f.rule))
