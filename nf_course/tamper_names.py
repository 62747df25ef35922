"""What a notebook binds, for the tampering rules: cells parsed as IPython runs them, the
names each statement binds, and :class:`NotebookNames`, what the rules of
:mod:`nf_course.tamper_rules` consult about the whole notebook (see :mod:`nf_course.tamper`)."""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

__all__ = [
    "NotebookNames",
    "attached_methods",
    "bindings_of",
    "builtins_read",
    "import_bindings",
    "parse_cell",
    "target_names",
]


@dataclass
class NotebookNames:
    """What the whole notebook binds at the top level, for the rules that need it.

    Attributes:
        protected: name -> the imports the instructor's cells bind it with, as
            ``(module, attribute or None)``; an empty set: bound by a ``def``, ``class``, or a
            builtin the instructor's cells use (no rebinding is allowed).
        kinds: name -> ``own`` or ``outside``, for names bound at the top level by any cell.
        checkers: names bound to objects imported from the checker packages.
        modules: name -> the dotted path it was imported as (``np`` -> ``numpy``).
        module_names: names bound by a plain ``import`` (certainly modules).
        methods: top-level functions attached to a class (``Planar.inverse = planar_inverse``)
            and never called by name: their first parameter is ``self``.
    """

    protected: dict[str, set[tuple[str, str | None]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    checkers: set[str] = field(default_factory=set)
    modules: dict[str, str] = field(default_factory=dict)
    methods: set[str] = field(default_factory=set)
    module_names: set[str] = field(default_factory=set)


def parse_cell(source: str) -> ast.Module | None:
    """The cell's code as IPython runs it (magics become ``get_ipython()`` calls); ``None``
    when it does not compile, in which case the kernel runs none of it either."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def import_bindings(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str, str | None]]:
    """``(bound name, module, attribute)`` of each name an import statement binds."""
    if isinstance(node, ast.Import):
        return [
            (
                alias.asname or alias.name.split(".")[0],
                alias.name if alias.asname else alias.name.split(".")[0],
                None,
            )
            for alias in node.names
        ]
    module = "." * node.level + (node.module or "")
    return [(alias.asname or alias.name, module, alias.name) for alias in node.names]


def target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in target_names(element)]
    if isinstance(target, ast.Starred):
        return target_names(target.value)
    return []


def bindings_of(tree: ast.Module) -> list[tuple[ast.stmt, str, str]]:
    """The top-level bindings of a cell: ``(statement, name, how)`` with ``how`` one of
    ``import``, ``def`` or ``assign`` (assignments, loops, ``with``, deletions)."""
    found: list[tuple[ast.stmt, str, str]] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.extend((node, name, "import") for name, _, _ in import_bindings(node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append((node, node.name, "def"))
            else:
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                    targets = [node.target]
                elif isinstance(node, (ast.For, ast.AsyncFor)):
                    targets = [node.target]
                elif isinstance(node, (ast.With, ast.AsyncWith)):
                    targets = [i.optional_vars for i in node.items if i.optional_vars]
                elif isinstance(node, ast.Delete):
                    targets = node.targets
                found.extend((node, n, "assign") for t in targets for n in target_names(t))
                for walrus in ast.walk(node):
                    if isinstance(walrus, ast.NamedExpr) and isinstance(walrus.target, ast.Name):
                        found.append((node, walrus.target.id, "assign"))
                # bodies of top-level compound statements bind at the top level too
                for body in ("body", "orelse", "finalbody"):
                    if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                        visit(getattr(node, body, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    if handler.name:
                        found.append((node, handler.name, "assign"))
                    visit(handler.body)

    visit(tree.body)
    return found


def attached_methods(trees: list[ast.Module]) -> set[str]:
    """Functions assigned as an attribute of a name (``Planar.inverse = planar_inverse``) and
    never called by name, so never given an object of the caller's choice as ``self``."""
    attached, called = set(), set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
                if any(isinstance(target, ast.Attribute) for target in node.targets):
                    attached.add(node.value.id)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.add(node.func.id)
    return attached - called


def builtins_read(tree: ast.Module) -> set[str]:
    """Builtin names a cell reads (``float``, ``print``...): rebinding them is protected."""
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return {name for name in names if hasattr(builtins, name) and not name.startswith("_")}
