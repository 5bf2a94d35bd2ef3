"""The dynamic half of harness validation: a smoke ``write`` / ``manage`` / ``read`` / ``dump`` run.

Runs on a tiny hand-made stream through the sandbox backend it is given (there is no default: which
sandbox runs candidate code is the caller's decision; ``mstar.harness.validate`` is the one caller in
the product), so a program that passes the static checks but cannot store and recall is caught early.
"""

from __future__ import annotations

from mstar.errors import CandidateFailure, HarnessError
from mstar.harness.contract import check_dump, check_read_result
from mstar.harness.knobs import resolve
from mstar.harness.loader import HarnessProgram
from mstar.sandbox.base import SandboxBackend, SessionLimits
from mstar.toolkit import Toolkit

SMOKE_EVENTS = [
    {"id": "S1:1", "session": "1", "time": "2024-03-01T10:00", "speaker": "Ana", "text": "I adopted a grey cat called Miso.", "meta": {}},
    {"id": "S1:2", "session": "1", "time": "2024-03-01T10:01", "speaker": "Ben", "text": "Nice! I am training for the Lisbon marathon.", "meta": {}},
    {"id": "S2:1", "session": "2", "time": "2024-03-08T18:30", "speaker": "Ana", "text": "Miso knocked my plant over again.", "meta": {}},
]
SMOKE_QUERY = {"id": "smoke", "question": "What is the name of Ana's cat?", "time": "2024-03-09T09:00", "budget": 256}


def smoke_test(program: HarnessProgram, backend: SandboxBackend, toolkit: Toolkit | None = None) -> None:
    """Raise ``HarnessError`` (reason prefixed ``smoke:``) when the program fails the smoke run.

    A program that needs an LLM and meets an offline toolkit raises ``CandidateFailure("needs_llm")``
    instead: that is not a defect of the program.
    """
    if backend is None:
        raise TypeError("smoke_test: a sandbox backend is required (mstar.harness.validate picks the run's)")
    toolkit = toolkit or Toolkit()
    session = None
    try:
        session = backend.open(program, resolve(program.knob_specs), toolkit, SessionLimits(call_timeout_s=30, episode_timeout_s=90))
        session.write(SMOKE_EVENTS[:2])
        session.manage("session_end")
        session.write(SMOKE_EVENTS[2:])
        session.manage("session_end")
        raw, _ = session.read(dict(SMOKE_QUERY))
        res = check_read_result(raw)
        if res.context and not res.items:
            raise CandidateFailure("bad_output", "read() returned a context but no items: items carry the provenance that is scored")
        for item in res.items:
            for src in item.sources:
                if not isinstance(src, str):
                    raise CandidateFailure("bad_output", f"item sources must be event id strings, got {src!r}")
        dumped = session.dump()
        if dumped is not None:
            check_dump(dumped)
    except CandidateFailure as e:
        if e.reason == "needs_llm":
            raise
        raise HarnessError(program.path, f"smoke: {e.reason}: {e.detail}") from None
    finally:
        if session is not None:
            session.close()
