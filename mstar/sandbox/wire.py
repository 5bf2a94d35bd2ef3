"""What the host accepts from a runner: every line is checked before and after ``json.loads``.

The runner's stdout is written by the runner *and* by whatever the harness does with the runner's
objects (``toolkit._channel`` is reachable from harness code), so every byte is the candidate's. A line
is accepted only when it is
1. nested at most ``MAX_DEPTH`` deep and at most ``MAX_ELEMENTS`` values (checked on the raw bytes, before ``json.loads`` recurses: a
   100,000-deep ``[[[[`` must not raise ``RecursionError`` in the host),
2. valid JSON (strict: no NaN / Infinity) whose top level is an object,
3. one of the message shapes below, with the type of every field checked, and no other key:
   - a reply    ``{"id": int, "result": ...}`` / ``{"id": int, "error": {"reason": str, "detail": str}}``
   - a partial  ``{"id": int, "partial": {"value": ..., "ms": number}}``
   - a request  ``{"id": str, "method": "llm" | "embed", "params": {...}}``
4. and (``check_result``) a result of the shape its method returns (e.g. ``write``: one finite,
   non-negative number per event).
Anything else raises ``ProtocolViolation``; the session turns it into the candidate's
``protocol_error`` and the host carries on.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
# Values in one line (commas + brackets outside strings): json.loads turns a 16 MB line of "[]," into
# millions of Python objects, ~20x its size in host memory. Real replies (contexts are strings) are far
# below this; a dump of 100k records is about 1M.
MAX_ELEMENTS = 2_000_000
# Reasons a runner may report for a failed call (sandbox/runner.py); anything else is a forgery.
RUNNER_REASONS = frozenset({"load_error", "crash", "needs_llm", "oom", "bad_output", "forbidden",
                            "resource_limit", "protocol_error"})
HOST_METHODS = frozenset({"llm", "embed"})
MAX_ID = 2**53

_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_PAIRS = (b"[]", b"{}")


class ProtocolViolation(ValueError):
    pass


def nesting_ok(line: bytes, max_depth: int = MAX_DEPTH, max_elements: int = MAX_ELEMENTS) -> bool:
    """True when the brackets of ``line`` (outside strings) are balanced, nested <= ``max_depth``, and
    the line holds at most ``max_elements`` values.

    Linear in C: strings are cut out, every byte but brackets deleted, then innermost pairs removed
    one level per pass; what is left after ``max_depth`` passes is too deep (or unbalanced)."""
    bare = _STRING.sub(b"", line)
    rest = bare.translate(None, _NOT_BRACKET)
    if len(rest) + bare.count(b",") > max_elements:
        return False
    for _ in range(max_depth):
        if not rest:
            return True
        shorter = rest.replace(_PAIRS[0], b"").replace(_PAIRS[1], b"")
        if len(shorter) == len(rest):
            return False  # unbalanced or mismatched: not JSON anyway
        rest = shorter
    return not rest


def _reject_constant(name: str) -> Any:
    raise ProtocolViolation(f"{name} is not JSON")


def _number(x: Any) -> bool:
    return type(x) in (int, float) and math.isfinite(x) and x >= 0


def _is_id(x: Any) -> bool:
    return type(x) is int and 0 <= x < MAX_ID


def parse(line: bytes) -> dict[str, Any]:
    """One line from the runner -> a checked message dict, or ``ProtocolViolation`` saying why."""
    if not nesting_ok(line):
        raise ProtocolViolation(f"a line nested deeper than {MAX_DEPTH} levels, with over {MAX_ELEMENTS:,} "
                                "values, or unbalanced")
    try:
        msg = json.loads(line, parse_constant=_reject_constant)
    except ProtocolViolation:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolViolation(f"junk on the protocol channel: {line[:120]!r}") from None
    if not isinstance(msg, dict):
        raise ProtocolViolation(f"junk on the protocol channel: {line[:120]!r}")
    keys = set(msg)
    if "method" in msg:
        if keys != {"id", "method", "params"}:
            raise ProtocolViolation(f"a request with keys {sorted(keys)[:6]}")
        if type(msg["id"]) is not str or len(msg["id"]) > 64:
            raise ProtocolViolation("a request id must be a short str")
        if msg["method"] not in HOST_METHODS:
            raise ProtocolViolation(f"unknown host method {str(msg['method'])[:40]!r}")
        if not isinstance(msg["params"], dict):
            raise ProtocolViolation("request params must be an object")
        return msg
    if not _is_id(msg.get("id")):
        raise ProtocolViolation(f"a reply id must be an int, got {str(msg.get('id'))[:40]!r}")
    if keys == {"id", "result"}:
        return msg
    if keys == {"id", "partial"}:
        part = msg["partial"]
        if not isinstance(part, dict) or set(part) != {"value", "ms"} or not _number(part["ms"]):
            raise ProtocolViolation("a partial must be {value, ms} with ms a finite number >= 0")
        return msg
    if keys == {"id", "error"}:
        err = msg["error"]
        if not isinstance(err, dict) or set(err) != {"reason", "detail"} \
                or type(err["reason"]) is not str or type(err["detail"]) is not str:
            raise ProtocolViolation("an error must be {reason: str, detail: str}")
        if err["reason"] not in RUNNER_REASONS:
            raise ProtocolViolation(f"an error with an unknown reason {err['reason'][:40]!r}")
        return msg
    raise ProtocolViolation(f"a message with keys {sorted(keys)[:6]}")


def check_result(method: str, result: Any, n: int = 0) -> Any:
    """The result of ``method`` in the shape the runner returns it (``n``: the batch size of ``write``
    / ``read_many``); ``ProtocolViolation`` otherwise."""
    ok: bool
    if method == "load":
        ok = isinstance(result, dict)
    elif method == "write":
        ok = isinstance(result, list) and len(result) == n and all(_number(x) for x in result)
    elif method == "manage":
        ok = _number(result)
    elif method == "read":
        ok = isinstance(result, dict) and set(result) == {"value", "ms"} and _number(result["ms"])
    elif method == "read_many":
        ok = isinstance(result, dict) and set(result) == {"n"} and result["n"] == n and type(result["n"]) is int
    elif method == "dump":  # the value itself is the harness's: judged by the caller (bad_output)
        ok = isinstance(result, dict) and set(result) == {"value"}
    else:
        ok = False
    if not ok:
        raise ProtocolViolation(f"{method}: a result of the wrong shape: {json.dumps(result)[:120]}")
    return result
