"""The components of a modular harness (docs/HARNESS.md) as AST facts: what a top-level statement
binds, which module-level names it needs (transitively), which knobs it reads, and dead-code pruning.

``structural`` moves a component between programs; a function moved without the helpers, constants
and imports it uses would not run, and one moved onto a same-named but different helper would run
wrong. These facts let it carry exactly what is needed and rename what collides.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from mstar.evolve.operators.source_edit import Span, knobs_node, replace_spans

COMPONENTS = ("encode", "index", "retrieve", "expand", "pack", "maintain")
# Components that have an identity (the argument handed back unchanged), so they can be removed.
IDENTITY_ARG = {"expand": "hits", "maintain": "records"}
# Names a move never carries or prunes: the contract of the module.
RESERVED = frozenset({"Memory", "KNOBS", "INSTRUCTIONS", "NEEDS_LLM"})

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)


def bound_names(stmt: ast.stmt) -> set[str]:
    """Module-level names a top-level statement binds."""
    if isinstance(stmt, _DEFS):
        return {stmt.name}
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return {a.asname or a.name.split(".")[0] for a in stmt.names}
    out: set[str] = set()
    todo: list[ast.AST] = [stmt]
    while todo:  # assignments, and defs/imports nested in a top-level if/try/for
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, _DEFS):
            out.add(node.name)
            continue
        elif isinstance(node, ast.Import | ast.ImportFrom):
            out |= {a.asname or a.name.split(".")[0] for a in node.names}
        if isinstance(node, _SCOPES):
            continue  # a comprehension's or lambda's variables are its own, not the module's
        todo.extend(ast.iter_child_nodes(node))
    return out


def local_names(fn: ast.AST) -> set[str]:
    """Names local to a function (parameters and assignments): they shadow module-level names."""
    if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return set()
    a = fn.args
    params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    params |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    stores = {n.id for stmt in fn.body for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return params | stores


def global_refs(stmt: ast.stmt) -> list[ast.Name]:
    """The Name nodes of ``stmt`` that refer to module-level names (locals of a def excluded)."""
    locals_ = local_names(stmt)
    return [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id not in locals_]


def knob_reads(stmt: ast.AST) -> dict[str, list[ast.Constant]]:
    """Knob names read as ``knobs["x"]`` or ``knobs.get("x", ...)`` (also ``self.knobs``), with the
    string nodes so a move can rename a knob in the code it carries."""
    out: dict[str, list[ast.Constant]] = {}

    def is_knobs(n: ast.AST) -> bool:
        return (isinstance(n, ast.Name) and n.id == "knobs") or (isinstance(n, ast.Attribute) and n.attr == "knobs")

    for n in ast.walk(stmt):
        key = None
        if isinstance(n, ast.Subscript) and is_knobs(n.value):
            key = n.slice
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
              and is_knobs(n.func.value) and n.args):
            key = n.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            out.setdefault(key.value, []).append(key)
    return out


def is_identity(fn: ast.AST) -> bool:
    """A function whose body (docstring aside) only returns one of its parameters unchanged."""
    if not isinstance(fn, ast.FunctionDef):
        return False
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    params = {a.arg for a in fn.args.args}
    return (len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Name)
            and body[0].value.id in params)


@dataclass
class Program:
    """A parsed harness source with its top-level statements indexed by the names they bind."""

    source: str
    tree: ast.Module
    defs: dict[str, int] = field(default_factory=dict)  # name -> index in tree.body
    # Statements that bind nothing but change a definition (``MONTHS.update(...)`` after
    # ``MONTHS = {...}``): they travel with it. Definition index -> their indices.
    attached: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, source: str) -> Program:
        tree = ast.parse(source)
        prog = cls(source, tree)
        for i, stmt in enumerate(tree.body):
            for name in bound_names(stmt):
                prog.defs.setdefault(name, i)
        for i, stmt in enumerate(tree.body):
            if bound_names(stmt) or (i == 0 and isinstance(stmt, ast.Expr)):
                continue
            for j in sorted({prog.defs[n.id] for n in global_refs(stmt) if prog.defs.get(n.id, i) < i}):
                prog.attached.setdefault(j, []).append(i)
        return prog

    def stmt(self, i: int) -> ast.stmt:
        return self.tree.body[i]

    def function(self, name: str) -> ast.FunctionDef | None:
        i = self.defs.get(name)
        node = self.tree.body[i] if i is not None else None
        return node if isinstance(node, ast.FunctionDef) else None

    def stmt_span(self, i: int) -> Span:
        """Whole lines of a top-level statement, decorators included."""
        node = self.tree.body[i]
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return (start, 0, node.end_lineno or node.lineno, len(self.line(node.end_lineno or node.lineno)))

    def line(self, lineno: int) -> bytes:
        return self.source.splitlines()[lineno - 1].encode("utf-8")

    def text(self, i: int) -> str:
        l0, _, l1, _ = self.stmt_span(i)
        return "\n".join(self.source.splitlines()[l0 - 1: l1])

    def dump(self, i: int) -> str:
        return ast.dump(self.tree.body[i])

    def deps(self, i: int) -> set[int]:
        """Indices of the top-level statements ``stmt(i)`` refers to directly."""
        out = set()
        for n in global_refs(self.tree.body[i]):
            j = self.defs.get(n.id)
            if j is not None and j != i and n.id not in RESERVED:
                out.add(j)
        return out | set(self.attached.get(i, []))

    def closure(self, i: int) -> list[int]:
        """Everything ``stmt(i)`` needs, transitively, in source order (``i`` itself excluded)."""
        seen: set[int] = set()
        todo = [i]
        while todo:
            for j in self.deps(todo.pop()):
                if j not in seen and j != i:
                    seen.add(j)
                    todo.append(j)
        return sorted(seen)

    def knobs(self) -> dict[str, Any]:
        node = knobs_node(self.tree)
        try:
            return ast.literal_eval(node.value) if node is not None else {}
        except ValueError:
            return {}

    def live_components(self) -> list[str]:
        """Components defined as functions and called from somewhere else in the module (the driver):
        moving one that nothing calls would change the text but not the behaviour."""
        out = []
        for c in COMPONENTS:
            i = self.defs.get(c)
            if i is None or not isinstance(self.tree.body[i], ast.FunctionDef):
                continue
            if any(n.id == c for j, s in enumerate(self.tree.body) if j != i for n in global_refs(s)):
                out.append(c)
        return out


def rename_in_stmt(prog: Program, i: int, names: dict[str, str], knobs: dict[str, str]) -> str:
    """The text of top-level statement ``i`` with module-level names and knob keys renamed."""
    stmt = prog.stmt(i)
    l0 = prog.stmt_span(i)[0]
    edits: list[tuple[Span, str]] = []
    for n in global_refs(stmt):
        if n.id in names:
            edits.append(((n.lineno, n.col_offset, n.end_lineno, n.end_col_offset), names[n.id]))
    if isinstance(stmt, _DEFS) and stmt.name in names:
        line = prog.line(stmt.lineno)
        m = re.search(rb"\b(?:def|class)\s+(" + re.escape(stmt.name.encode()) + rb")\b", line)
        if m:
            edits.append(((stmt.lineno, m.start(1), stmt.lineno, m.end(1)), names[stmt.name]))
    for key, nodes in knob_reads(stmt).items():
        if key in knobs:
            for c in nodes:  # knob names are identifiers: keep the quote the code was written with
                q = chr(prog.line(c.lineno)[c.col_offset])
                q = q if q in "'\"" else '"'
                edits.append(((c.lineno, c.col_offset, c.end_lineno, c.end_col_offset), f"{q}{knobs[key]}{q}"))
    return replace_spans(prog.text(i) + "\n", edits, first_line=l0).rstrip("\n")


def prune_dead(source: str) -> tuple[str, list[str]]:
    """Drop top-level defs, assignments and imports nothing refers to any more (after a component
    was replaced, its old helpers are dead); returns the source and the names dropped."""
    dropped: list[str] = []
    while True:
        prog = Program.parse(source)
        used = {n.id for s in prog.tree.body for n in global_refs(s)
                if not (isinstance(n.ctx, ast.Store) and isinstance(s, ast.Assign | ast.AnnAssign))}
        dead = []
        for i, stmt in enumerate(prog.tree.body):
            if not isinstance(stmt, _DEFS + (ast.Assign, ast.AnnAssign, ast.Import, ast.ImportFrom)):
                continue
            names = bound_names(stmt)
            if names and not names & (used | RESERVED | set(COMPONENTS)) and not any(n.startswith("__") for n in names):
                dead.append(i)
        if not dead:
            return source, dropped
        lines = source.splitlines(keepends=True)
        for i in sorted(dead, reverse=True):
            l0, _, l1, _ = prog.stmt_span(i)
            dropped += sorted(bound_names(prog.stmt(i)))
            del lines[l0 - 1: l1]
        source = re.sub(r"\n{4,}", "\n\n\n", "".join(lines))


def unused_knobs(source: str) -> list[str]:
    """KNOBS entries whose name appears nowhere else in the program as a string: nothing reads them,
    and tuning them would only waste trials."""
    prog = Program.parse(source)
    node = knobs_node(prog.tree)
    declared = list(prog.knobs())
    strings = {n.value for j, s in enumerate(prog.tree.body) if s is not node
               for n in ast.walk(s) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return [k for k in declared if k not in strings]


def state_keys(stmt: ast.AST) -> tuple[set[str], set[str]]:
    """(keys read, keys written) of the ``state`` dict: ``state["k"]`` / ``state.get("k")`` read it,
    ``state["k"] = ...`` / ``state.setdefault("k", ...)`` write it. Components talk through ``state``
    (index builds, retrieve reads), so a move must keep every read key written by someone."""
    reads: set[str] = set()
    writes: set[str] = set()
    for n in ast.walk(stmt):
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) and n.value.id == "state":
            if isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str):
                (writes if isinstance(n.ctx, ast.Store) else reads).add(n.slice.value)
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
              and n.func.value.id == "state" and n.args and isinstance(n.args[0], ast.Constant)):
            key = n.args[0].value
            if isinstance(key, str):
                (writes if n.func.attr in ("setdefault", "__setitem__") else reads).add(key)
    return reads, writes


def component_state(prog: Program, comp: str) -> tuple[set[str], set[str]]:
    """State keys a component reads and writes, its carried helpers included."""
    reads: set[str] = set()
    writes: set[str] = set()
    i = prog.defs.get(comp)
    if i is None:
        return reads, writes
    for j in [i, *prog.closure(i)]:
        r, w = state_keys(prog.stmt(j))
        reads |= r
        writes |= w
    return reads, writes
