"""Precise edits of a harness source: replace AST nodes' text, keep every other byte as it was.

Operators change programs by small, exact edits (a knob default, one function) so a child reads like
its parent and a diff shows only what changed. Positions come from ``ast``: line numbers are 1-based,
columns are UTF-8 byte offsets, so the edits are done on the encoded text.
"""

from __future__ import annotations

import ast
from typing import Any

Span = tuple[int, int, int, int]  # (lineno, col, end_lineno, end_col) as ast gives them


def span(node: ast.AST) -> Span:
    return (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]


def replace_spans(text: str, edits: list[tuple[Span, str]], first_line: int = 1) -> str:
    """Replace each span of ``text`` by its new text. Spans must not overlap. ``first_line`` is the
    line number ``text`` starts at (for editing a segment cut out of a larger source)."""
    lines = text.encode("utf-8").splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    blob = b"".join(lines)

    def offset(lineno: int, col: int) -> int:
        return starts[lineno - first_line] + col

    out = blob
    for (l0, c0, l1, c1), new in sorted(edits, key=lambda e: (e[0][0], e[0][1]), reverse=True):
        a, b = offset(l0, c0), offset(l1, c1)
        out = out[:a] + new.encode("utf-8") + out[b:]
    return out.decode("utf-8")


def knobs_node(tree: ast.Module) -> ast.Assign | None:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "KNOBS"):
            return node
    return None


def set_knob_defaults(source: str, values: dict[str, Any]) -> str:
    """The source with ``KNOBS[name]["default"]`` set to ``values[name]``; nothing else changes.
    Names not declared in KNOBS are ignored; an unchanged value leaves its text as written."""
    tree = ast.parse(source)
    node = knobs_node(tree)
    if node is None or not isinstance(node.value, ast.Dict):
        return source
    edits: list[tuple[Span, str]] = []
    for key, spec in zip(node.value.keys, node.value.values, strict=True):
        if not (isinstance(key, ast.Constant) and key.value in values and isinstance(spec, ast.Dict)):
            continue
        for k, v in zip(spec.keys, spec.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == "default":
                new = values[key.value]
                current = ast.literal_eval(v)
                if current != new or type(current) is not type(new):
                    edits.append((span(v), repr(new)))
    return replace_spans(source, edits) if edits else source


def rewrite_knobs(source: str, keep: list[str], add: dict[str, dict[str, Any]]) -> str:
    """Rewrite the KNOBS literal keeping the entries ``keep`` (their text as written) and appending
    ``add`` (name -> spec). Used when a structural move changes which knobs a program reads."""
    tree = ast.parse(source)
    node = knobs_node(tree)
    if node is None or not isinstance(node.value, ast.Dict):
        if not add:
            return source
        body = "".join(f"    {k!r}: {v!r},\n" for k, v in add.items())
        return source.rstrip("\n") + f"\n\nKNOBS = {{\n{body}}}\n"
    seg_lines = source.splitlines(keepends=True)
    entries = []
    for key, spec in zip(node.value.keys, node.value.values, strict=True):
        if isinstance(key, ast.Constant) and key.value in keep:
            entries.append(_segment(seg_lines, key.lineno, key.col_offset, spec.end_lineno, spec.end_col_offset))
    entries += [f"{k!r}: {v!r}" for k, v in add.items()]
    literal = "{\n" + "".join(f"    {e},\n" for e in entries) + "}" if entries else "{}"
    return replace_spans(source, [(span(node.value), literal)])


def _segment(lines: list[str], l0: int, c0: int, l1: int | None, c1: int | None) -> str:
    blob = "".join(lines[l0 - 1: l1]).encode("utf-8")
    last = len("".join(lines[l0 - 1: (l1 or l0) - 1]).encode("utf-8"))
    return blob[c0: last + (c1 or 0)].decode("utf-8")
