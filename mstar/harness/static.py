"""Static checks of a harness program (docs/ARCHITECTURE.md#harness-contract), done on the AST before any of it runs.

These are a first filter with precise messages (file and line); they are not a security boundary.
Untrusted programs are isolated by the sandbox (docs/ARCHITECTURE.md#sandbox), which a determined program cannot talk
its way out of the way it could dodge an AST check.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from typing import Any

from mstar.errors import HarnessError
from mstar.harness.knobs import KnobsError, parse_knobs

# Third-party modules a harness may import; each one is installed in the sandbox image.
# bm25s: the maintained sparse BM25 implementation the lexical seeds use (it needs only numpy).
ALLOWED_THIRD_PARTY = frozenset({"pydantic", "numpy", "bm25s"})

# Standard-library modules a memory program has no business with: network, processes, native code.
DENIED_STDLIB = frozenset(
    {
        "socket", "ssl", "socketserver", "asyncio", "selectors", "subprocess", "multiprocessing",
        "concurrent", "ctypes", "cffi", "urllib", "http", "ftplib", "smtplib", "poplib", "imaplib",
        "telnetlib", "xmlrpc", "webbrowser", "pty", "pdb", "signal", "resource", "mmap", "shutil",
        "importlib", "runpy", "code", "codeop", "builtins", "gc", "sys", "threading", "_thread",
    }
)

# Calls that escape the program: arbitrary code, processes, and killing things.
DENIED_CALLS = frozenset({"eval", "exec", "compile", "__import__", "breakpoint", "globals", "vars"})
DENIED_OS_ATTRS = frozenset(
    {
        "system", "popen", "fork", "forkpty", "kill", "killpg", "execv", "execve", "execl", "execle",
        "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
        "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "environ", "getenv", "putenv",
        "unsetenv", "setuid", "setgid", "chroot", "remove", "unlink", "rmdir", "removedirs",
    }
)

REQUIRED_METHODS = ("__init__", "write", "read")


@dataclass
class StaticInfo:
    """What the AST tells about a harness without running it."""

    path: str
    docstring: str
    knobs: dict[str, Any]
    needs_llm: bool
    methods: set[str] = field(default_factory=set)
    imports: set[str] = field(default_factory=set)
    instructions: str = ""  # the literal value; "" when INSTRUCTIONS is an expression


def _top_module(name: str) -> str:
    return name.split(".", 1)[0]


def _check_import(path: str, node: ast.AST, mod: str) -> None:
    top = _top_module(mod)
    if top == "mstar":
        raise HarnessError(path, "a harness must not import mstar (the exported module runs without it)", node.lineno)
    if top in DENIED_STDLIB:
        raise HarnessError(path, f"import of {top!r} is not allowed in a harness (network, processes or native code)", node.lineno)
    if top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
        allowed = ", ".join(sorted(ALLOWED_THIRD_PARTY))
        raise HarnessError(path, f"import of {top!r} is not allowed: only the standard library and {allowed}", node.lineno)


def _literal(path: str, node: ast.Assign, name: str) -> Any:
    try:
        return ast.literal_eval(node.value)
    except ValueError:
        raise HarnessError(path, f"{name} must be a plain literal (no names or calls)", node.lineno) from None


def check_source(source: str, path: str = "<harness>") -> StaticInfo:
    """Parse and check a harness source. Raises ``HarnessError`` naming the file and line."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as e:
        raise HarnessError(path, f"syntax error: {e.msg}", e.lineno) from None

    top: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    top[t.id] = node
        elif isinstance(node, ast.ClassDef | ast.FunctionDef):
            top[node.name] = node

    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                _check_import(path, node, a.name)
                imports.add(_top_module(a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise HarnessError(path, "relative imports are not allowed: a harness is one standalone module", node.lineno)
            _check_import(path, node, node.module or "")
            imports.add(_top_module(node.module or ""))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DENIED_CALLS:
            raise HarnessError(path, f"call to {node.func.id}() is not allowed in a harness", node.lineno)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in DENIED_OS_ATTRS:
                raise HarnessError(path, f"os.{node.attr} is not allowed in a harness", node.lineno)
            if node.attr.startswith("__") and node.attr not in ("__init__", "__name__", "__class__", "__dict__"):
                raise HarnessError(path, f"access to dunder attribute {node.attr!r} is not allowed", node.lineno)

    if "INSTRUCTIONS" not in top:
        raise HarnessError(path, "missing INSTRUCTIONS: a module-level str telling the agent how to use recalled memory")
    instr = top["INSTRUCTIONS"]
    if isinstance(instr, ast.Assign | ast.AnnAssign):
        try:
            value = ast.literal_eval(instr.value) if instr.value is not None else None
        except ValueError:
            value = ""  # an expression (e.g. concatenation with a constant): checked again when loaded
        if value is not None and not isinstance(value, str):
            raise HarnessError(path, "INSTRUCTIONS must be a str", instr.lineno)
        instructions = value or ""
    else:
        raise HarnessError(path, "INSTRUCTIONS must be assigned a str at module level", instr.lineno)

    if "KNOBS" not in top:
        raise HarnessError(path, "missing KNOBS: a module-level dict literal of tunable constants ({} if none)")
    knobs_node = top["KNOBS"]
    if not isinstance(knobs_node, ast.Assign | ast.AnnAssign) or knobs_node.value is None:
        raise HarnessError(path, "KNOBS must be assigned a dict literal at module level", knobs_node.lineno)
    try:
        knobs = parse_knobs(_literal(path, knobs_node, "KNOBS"))
    except KnobsError as e:
        raise HarnessError(path, str(e), knobs_node.lineno) from None

    needs_llm = False
    if "NEEDS_LLM" in top:
        node = top["NEEDS_LLM"]
        val = _literal(path, node, "NEEDS_LLM") if isinstance(node, ast.Assign) else None
        if not isinstance(val, bool):
            raise HarnessError(path, "NEEDS_LLM must be True or False", node.lineno)
        needs_llm = val

    mem = top.get("Memory")
    if not isinstance(mem, ast.ClassDef):
        raise HarnessError(path, "missing class Memory with __init__(self, toolkit, knobs), write(event), read(query)")
    methods = {n.name for n in mem.body if isinstance(n, ast.FunctionDef)}
    for m in REQUIRED_METHODS:
        if m not in methods:
            raise HarnessError(path, f"class Memory lacks method {m}()", mem.lineno)
    init = next(n for n in mem.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    if len(init.args.args) < 3 and init.args.vararg is None:
        raise HarnessError(path, "Memory.__init__ must take (self, toolkit, knobs)", init.lineno)

    return StaticInfo(
        path=path,
        docstring=ast.get_docstring(tree) or "",
        knobs=knobs,
        needs_llm=needs_llm,
        methods=methods,
        imports=imports,
        instructions=instructions,
    )
