"""The novelty filter: a child that is a near-duplicate of a program already tried is not evaluated.

Two programs are the same point of the search when their *code* is nearly the same and their *knob
values* are nearly the same. Code is compared after normalisation (parsed and unparsed: comments,
docstrings and layout drop out; the ``KNOBS`` literal is taken out because its defaults are knob
values, compared separately): identical normalised code is caught by hash, nearly identical code by
the Jaccard similarity of token 5-shingles. Knob values are close when every numeric knob differs by
at most ``knob_eps`` of its range and every categorical / boolean knob is equal. So ``tune`` children
(same code, new knob values) pass, and a rewrite that only renames or re-comments does not.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
SHINGLE = 5


def normalise_source(source: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return " ".join(source.split())
    body = []
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "KNOBS"):
            continue
        body.append(node)
    tree.body = body
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            stmts = node.body
            if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant) \
                    and isinstance(stmts[0].value.value, str):
                node.body = stmts[1:] or [ast.Pass()]
    return ast.unparse(tree)


def shingles(text: str, k: int = SHINGLE) -> frozenset[str]:
    # Strings, not hash() values: exact set semantics, and no dependence on the process's hash seed.
    toks = _TOKEN.findall(text)
    if len(toks) < k:
        return frozenset({"\x1f".join(toks)})
    return frozenset("\x1f".join(toks[i : i + k]) for i in range(len(toks) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def knobs_close(a: dict[str, Any], b: dict[str, Any], specs: dict[str, Any], eps: float) -> bool:
    if a.keys() != b.keys():
        return False
    for k, va in a.items():
        vb = b[k]
        spec = specs.get(k)
        numeric = isinstance(va, int | float) and not isinstance(va, bool) and isinstance(vb, int | float) \
            and not isinstance(vb, bool)
        if numeric and spec is not None and hasattr(spec, "low"):
            span = float(spec.high - spec.low) or 1.0
            if abs(float(va) - float(vb)) / span > eps:
                return False
        elif va != vb:
            return False
    return True


@dataclass
class _Entry:
    id: str
    digest: str
    shingles: frozenset[str]
    knobs: dict[str, Any]


@dataclass
class Verdict:
    novel: bool
    reason: str = ""
    similar_to: str | None = None
    similarity: float = 0.0


class NoveltyFilter:
    def __init__(self, threshold: float = 0.995, knob_eps: float = 0.01, enabled: bool = True):
        self.threshold = threshold
        self.knob_eps = knob_eps
        self.enabled = enabled  # off: only a program already tried (same id) is refused
        self.entries: list[_Entry] = []
        self.ids: set[str] = set()

    @staticmethod
    def _fingerprint(source: str) -> tuple[str, frozenset[str]]:
        norm = normalise_source(source)
        return hashlib.sha256(norm.encode()).hexdigest(), shingles(norm)

    def check(self, pid: str, source: str, knobs: dict[str, Any], specs: dict[str, Any]) -> Verdict:
        if pid in self.ids:
            return Verdict(False, f"duplicate of {pid}", pid, 1.0)
        if not self.enabled:
            return Verdict(True)
        digest, sh = self._fingerprint(source)
        best: tuple[float, str | None] = (0.0, None)
        for e in self.entries:
            sim = 1.0 if e.digest == digest else jaccard(sh, e.shingles)
            if sim >= self.threshold and knobs_close(knobs, e.knobs, specs, self.knob_eps):
                what = "same code" if sim == 1.0 else f"code {sim:.3f} similar"
                return Verdict(False, f"near-duplicate of {e.id} ({what}, same knob values)", e.id, sim)
            if sim > best[0]:
                best = (sim, e.id)
        return Verdict(True, "", best[1], best[0])

    def add(self, pid: str, source: str, knobs: dict[str, Any]) -> None:
        if pid in self.ids:
            return
        digest, sh = self._fingerprint(source)
        self.ids.add(pid)
        self.entries.append(_Entry(pid, digest, sh, dict(knobs)))
