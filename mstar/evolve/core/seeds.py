"""The seeds of a run: which library programs start the search, and which ones ``structural`` borrows from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mstar.errors import HarnessError, UsageError
from mstar.evolve.core.breed import program_id
from mstar.evolve.store.run_store import ProgramRecord
from mstar.harness.knobs import defaults
from mstar.harness.loader import load_program, seed_names


def _usable_seed(name: str, explicit: bool, has_llm: bool, log: Callable[[str], None]) -> Any:
    try:
        prog = load_program(name)
    except HarnessError as e:
        if explicit:
            raise UsageError(f"--seeds: {e}") from None
        log(f"seed {name}: skipped, it does not load: {e}")
        return None
    if prog.needs_llm and not has_llm:
        log(f"seed {name}: needs an LLM, skipped offline (pass --model to include it)")
        return None
    return prog


def seed_records(chosen: list[str] | None, has_llm: bool, log: Callable[[str], None]) -> list[ProgramRecord]:
    """``chosen`` (--seeds) or every seed of the library, minus those that cannot run here (said in the log)."""
    out: list[ProgramRecord] = []
    for name in chosen or seed_names():
        prog = _usable_seed(name, chosen is not None, has_llm, log)
        if prog is None:
            continue
        values = defaults(prog.knob_specs)
        pid = program_id(prog.source, values, prog.knob_specs)
        if any(r.id == pid for r in out):
            continue
        out.append(ProgramRecord(id=pid, name=name, source=prog.source, knobs=values, status="seed",
                                 operator="seed", created=0.0))
    if not out:
        raise UsageError("no usable seed program (every one needs an LLM? pass --model)")
    return out


def parts_bin(seeds: list[ProgramRecord], has_llm: bool) -> dict[str, str]:
    """Every usable seed of the library (not only --seeds): what `structural` may borrow from."""
    out = {r.name: r.source for r in seeds}
    for name in seed_names():
        if name in out:
            continue
        try:
            prog = load_program(name)
        except HarnessError:
            continue
        if not prog.needs_llm or has_llm:
            out[name] = prog.source
    return out
