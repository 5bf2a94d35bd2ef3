"""Turning a model's reply into a child program: SEARCH/REPLACE edit blocks, or a full rewrite.

The edit format (taught to the model by ``prompts/edit_format.md``)::

    <<<<<<< SEARCH
    lines copied from the current program
    =======
    the lines that replace them
    >>>>>>> REPLACE

Blocks apply in order, each to the result of the previous ones. A SEARCH must match exactly one
place: first verbatim, then line by line ignoring trailing whitespace, then ignoring indentation
(the replacement is re-indented by the same offset). Models often wrap blocks in code fences or
drift in whitespace; both are tolerated, but a SEARCH that matches nothing or matches twice is an
error with the nearest lines quoted, because that message goes back to the model to fix.

When a reply has no edit blocks, the longest ```python fenced block is taken as a full rewrite.
"""

from __future__ import annotations

import difflib
import re

from pydantic import BaseModel, Field

# 5-9 markers: models miscount the angle brackets; one marker per line, nothing but the keyword after it.
_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$")
_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_RATIONALE = re.compile(r"^\s*\**\s*RATIONALE\s*\**\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


class PatchError(Exception):
    """A reply that cannot be turned into a program. ``reason`` is a short tag, ``detail`` says where."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class EditBlock(BaseModel):
    search: str
    replace: str
    number: int  # 1-based position in the reply, for error messages


class ParsedReply(BaseModel):
    rationale: str = ""
    edits: list[EditBlock] = Field(default_factory=list)
    rewrite: str | None = None


def parse_reply(text: str) -> ParsedReply:
    """Edit blocks (preferred) or a full rewrite, plus the one-line ``RATIONALE:`` when given."""
    m = _RATIONALE.search(text)
    rationale = m.group(1).strip() if m else ""
    edits = _parse_blocks(text)
    if edits:
        return ParsedReply(rationale=rationale, edits=edits)
    fenced = [b for b in _FENCE.findall(text) if b.strip()]
    if fenced:
        return ParsedReply(rationale=rationale, rewrite=max(fenced, key=len).rstrip("\n") + "\n")
    raise PatchError("patch_empty", "the reply has neither SEARCH/REPLACE blocks nor a ```python block "
                                    "with the whole program")


def _parse_blocks(text: str) -> list[EditBlock]:
    blocks: list[EditBlock] = []
    state, search, replace = "out", [], []  # type: ignore[var-annotated]
    for line in text.splitlines():
        if state == "out":
            if _SEARCH.match(line):
                state, search, replace = "search", [], []
            elif _DIVIDER.match(line) or _REPLACE.match(line):
                raise PatchError("patch_malformed", f"block {len(blocks) + 1}: '{line.strip()}' without a "
                                                    "'<<<<<<< SEARCH' line before it")
        elif state == "search":
            if _DIVIDER.match(line):
                state = "replace"
            elif _SEARCH.match(line) or _REPLACE.match(line):
                raise PatchError("patch_malformed", f"block {len(blocks) + 1}: expected '=======' after the "
                                                    f"SEARCH lines, found '{line.strip()}'")
            else:
                search.append(line)
        else:
            if _REPLACE.match(line):
                blocks.append(EditBlock(search="\n".join(search), replace="\n".join(replace),
                                        number=len(blocks) + 1))
                state = "out"
            elif _SEARCH.match(line):
                raise PatchError("patch_malformed", f"block {len(blocks) + 1}: a new SEARCH began before "
                                                    "'>>>>>>> REPLACE' closed this one")
            else:
                replace.append(line)
    if state != "out":
        raise PatchError("patch_malformed", f"block {len(blocks) + 1}: not closed (the reply ends inside it; "
                                            "each block needs SEARCH, '=======' and '>>>>>>> REPLACE' lines)")
    return blocks


def _trim_blank(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _find(hay: list[str], needle: list[str], key) -> list[int]:
    keyed = [key(h) for h in needle]
    n = len(needle)
    return [i for i in range(len(hay) - n + 1) if [key(h) for h in hay[i : i + n]] == keyed]


def _hint(src_lines: list[str], search_lines: list[str]) -> str:
    """The source line closest to the SEARCH's first line: what the model most likely meant."""
    first = next((s.strip() for s in search_lines if s.strip()), "")
    close = difflib.get_close_matches(first, [s.strip() for s in src_lines if s.strip()], n=1, cutoff=0.5)
    return f"; the closest line in the program is: {close[0]!r}" if close else ""


def apply_edit(source: str, edit: EditBlock) -> str:
    search_lines = _trim_blank(edit.search.splitlines())
    if not search_lines:
        raise PatchError("patch_malformed", f"block {edit.number}: the SEARCH part is empty; copy the lines "
                                            "to change from the program")
    # Verbatim first: exact text, whatever the line structure.
    exact = "\n".join(search_lines)
    count = source.count(exact)
    if count == 1:
        repl = "\n".join(_trim_blank(edit.replace.splitlines()))
        at = source.index(exact)
        end = at + len(exact)
        whole_lines = (at == 0 or source[at - 1] == "\n") and source[end : end + 1] == "\n"
        if not repl and whole_lines:
            end += 1  # deleting whole lines deletes their line break too, not leaving a blank line
        return source[:at] + repl + source[end:]
    if count > 1:
        raise PatchError("patch_ambiguous", f"block {edit.number}: the SEARCH text occurs {count} times; "
                                            "include more surrounding lines so it matches exactly once")
    src_lines = source.split("\n")
    for key, reindent in ((str.rstrip, False), (str.strip, True)):
        hits = _find(src_lines, search_lines, key)
        if len(hits) > 1:
            raise PatchError("patch_ambiguous", f"block {edit.number}: the SEARCH lines match {len(hits)} "
                                                "places; include more surrounding lines")
        if hits:
            i = hits[0]
            repl = _trim_blank(edit.replace.splitlines())
            if reindent:
                repl = _reindent(repl, _indent(search_lines[0]), _indent(src_lines[i]))
            return "\n".join(src_lines[:i] + repl + src_lines[i + len(search_lines) :])
    raise PatchError("patch_no_match", f"block {edit.number}: the SEARCH lines are not in the program "
                                       f"(first line: {search_lines[0].strip()!r}){_hint(src_lines, search_lines)}")


def _reindent(lines: list[str], model_indent: str, real_indent: str) -> list[str]:
    """Shift the replacement by the offset between the model's indentation and the program's."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
        elif line.startswith(model_indent):
            out.append(real_indent + line[len(model_indent) :])
        else:
            out.append(real_indent + line.lstrip())
    return out


def apply_reply(source: str, text: str) -> tuple[str, ParsedReply]:
    """The child source a reply describes, against ``source``; raises ``PatchError``."""
    parsed = parse_reply(text)
    if parsed.rewrite is not None:
        return parsed.rewrite, parsed
    child = source
    for edit in parsed.edits:
        child = apply_edit(child, edit)
    if source.endswith("\n") and not child.endswith("\n"):
        child += "\n"
    return child, parsed
