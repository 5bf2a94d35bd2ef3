"""The ``inline`` backend: the harness runs in this process. For debugging and trusted seeds only.

No isolation and no deadlines: a harness that hangs hangs the host. Use ``process`` or ``docker``
for programs an LLM wrote.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from mstar.errors import BudgetExceeded, CandidateFailure, HarnessError, LLMUnavailable
from mstar.harness.loader import HarnessProgram, load_module
from mstar.sandbox.base import SessionLimits
from mstar.toolkit import Toolkit


def _tb_tail(exc: BaseException, path: str, frames: int = 4) -> str:
    """The harness's own frames (file:line, code) and the exception: what a reader (or an LLM) can act
    on; never mstar's frames (the runner in the sandboxes formats the same way)."""
    tb = traceback.extract_tb(exc.__traceback__)
    own = [f for f in tb if f.filename == path]
    if own:
        last = tb.index(own[-1])
        own = own[-frames:] + [f for f in tb[last + 1 :] if "/mstar/" not in f.filename][-2:]
    else:
        own = [f for f in tb if "/mstar/" not in f.filename][-frames:]
    lines = ["Traceback (harness frames):"]
    for f in own:
        lines.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
        if f.line:
            lines.append(f"    {f.line.strip()}")
    lines += [ln.rstrip() for ln in traceback.format_exception_only(type(exc), exc)][-3:]
    return "\n".join(lines)


class InlineSession:
    def __init__(self, program: HarnessProgram, knobs: dict[str, Any], toolkit: Toolkit):
        self.program = program
        try:
            module = load_module(program.source, program.path, program.name)
        except HarnessError as e:
            raise CandidateFailure("load_error", str(e)) from None
        except Exception as e:
            raise CandidateFailure("load_error", _tb_tail(e, program.path)) from None
        self.memory = self._call(lambda: module.Memory(toolkit, dict(knobs)), "init")

    def _call(self, fn, what: str):
        try:
            return fn()
        except LLMUnavailable as e:
            raise CandidateFailure("needs_llm", str(e)) from None
        except (CandidateFailure, BudgetExceeded):
            raise
        except MemoryError:
            raise CandidateFailure("oom", f"MemoryError in {what}") from None
        except RecursionError:
            raise CandidateFailure("crash", f"RecursionError in {what}") from None
        except Exception as e:
            raise CandidateFailure("crash", f"in {what}: {_tb_tail(e, self.program.path)}") from None

    def write(self, events: list[dict[str, Any]]) -> list[float]:
        out = []
        w = self.memory.write
        for ev in events:
            t0 = time.perf_counter()
            self._call(lambda ev=ev: w(ev), "write")
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def manage(self, phase: str) -> float:
        fn = getattr(self.memory, "manage", None)
        if fn is None:
            return 0.0
        t0 = time.perf_counter()
        self._call(lambda: fn(phase), "manage")
        return (time.perf_counter() - t0) * 1000

    def read(self, query: dict[str, Any]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        res = self._call(lambda: self.memory.read(dict(query)), "read")
        return res, (time.perf_counter() - t0) * 1000

    def dump(self) -> list[dict[str, Any]] | None:
        fn = getattr(self.memory, "dump", None)
        if fn is None:
            return None
        return self._call(fn, "dump")

    def close(self) -> None:
        self.memory = None


class InlineBackend:
    name = "inline"

    def open(self, program, knobs, toolkit: Toolkit, limits: SessionLimits, labels=None) -> InlineSession:
        return InlineSession(program, knobs, toolkit)
