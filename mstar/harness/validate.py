"""The one harness validator: the static checks, then a smoke run *in a sandbox backend*.

Every child an operator proposes (structural, tune, llm_reflect, llm_crossover) and every
``mstar check`` goes through here, with the run's backend (the one ``--sandbox`` chose): candidate code
never runs in the host's process unless the user asked for ``--sandbox inline``. With no backend given,
the process sandbox is used, never the host.

A failure is a ``ValidationError`` with a short reason tag (``syntax_error``, ``contract``, ``smoke``)
and a detail the LLM operators send back to the model. The detail holds only what the sandbox could see:
the smoke stream below (made up here) and the harness's own traceback; no data file is reachable from a
sandbox, so no gold can reach a prompt this way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mstar.errors import CandidateFailure, HarnessError
from mstar.harness.loader import HarnessProgram, from_source
from mstar.harness.smoke import smoke_test
from mstar.toolkit import Toolkit


class ValidationError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


class Validated(BaseModel):
    """A program that passed; ``needs_llm``: the smoke run stopped at its first model call (offline)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    program: HarnessProgram
    needs_llm: bool = False


def default_backend() -> Any:
    """The sandbox used when a caller has none: the process sandbox (never the host's own process)."""
    from mstar.sandbox.registry import get_backend

    return get_backend("process", spares=0, warn=False)


def validate_program(program: HarnessProgram, backend: Any, toolkit: Toolkit | None = None) -> Validated:
    """Smoke-run an already statically checked program through ``backend``."""
    own = backend is None
    if own:
        backend = default_backend()
    try:
        smoke_test(program, backend, toolkit)
    except CandidateFailure as e:
        if e.reason != "needs_llm":
            raise ValidationError("smoke", f"{e.reason}: {e.detail}") from None
        return Validated(program=program, needs_llm=True)
    except HarnessError as e:
        raise ValidationError("smoke", e.reason.removeprefix("smoke: ")) from None
    finally:
        if own:
            backend.close()
    return Validated(program=program)


def validate_source(source: str, backend: Any, name: str = "child", path: str = "<child>",
                    toolkit: Toolkit | None = None) -> Validated:
    """Compile, run the static checks, then smoke-run ``source`` through ``backend``."""
    try:
        compile(source, path, "exec")
    except SyntaxError as e:
        raise ValidationError("syntax_error", f"line {e.lineno}: {e.msg}: {(e.text or '').strip()!r}") from None
    try:
        program = from_source(source, name=name, path=path)
    except HarnessError as e:
        raise ValidationError("contract", str(e)) from None
    return validate_program(program, backend, toolkit)
