"""What to export: a run folder's winner, a seed name or a harness file, checked before it is shipped."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from mstar.errors import CandidateFailure, HarnessError, UsageError
from mstar.harness.loader import HarnessProgram, from_source, load_program


class ExportSource(BaseModel):
    """A checked program and where it came from."""

    label: str  # a short name: the seed, the file stem or the run id
    origin: str  # what the user passed, resolved: "seed bm25", "run runs/x (best.py)", "file a/b.py"
    program: HarnessProgram
    smoke: str  # "passed" or why it was skipped


def _from_run(run: Path) -> tuple[str, str, HarnessProgram]:
    if not (run / "run.db").is_file() and not (run / "config.json").is_file():
        raise UsageError(f"{run}: a folder but not an mstar run (no run.db): pass a run folder, a seed name or a .py file")
    best = run / "best.py"
    if not best.is_file():
        raise UsageError(f"{run}: the run has no winner yet (no best.py): let it finish "
                         f"(mstar evolve --resume {run}) or export a program file instead")
    try:
        source = best.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{best}: cannot read: {e}") from None
    return run.name, f"run {run} (best.py)", from_source(source, name=run.name, path=str(best))


def resolve(spec: str) -> tuple[str, str, HarnessProgram]:
    """``RUN_DIR | HARNESS | FILE`` -> (label, origin, program with the static checks passed)."""
    p = Path(spec)
    if p.is_dir():
        return _from_run(p)
    prog = load_program(spec)
    origin = f"file {prog.path}" if (spec.endswith(".py") or "/" in spec) else f"seed {prog.name}"
    return prog.name, origin, prog


def check(spec: str, sandbox: str = "auto") -> ExportSource:
    """Resolve ``spec`` and smoke-run the program in ``sandbox``; a failure is a ``HarnessError``."""
    from mstar.harness.smoke import smoke_test
    from mstar.sandbox.registry import get_backend

    label, origin, prog = resolve(spec)
    backend = get_backend(sandbox)
    try:
        smoke_test(prog, backend)
        smoke = "passed"
    except CandidateFailure as e:
        if e.reason != "needs_llm":
            raise
        # Offline the smoke run cannot exercise an LLM harness; the user's model will at run time.
        smoke = "skipped: the program needs an LLM (set MSTAR_MODEL where it runs)"
        print(f"[mstar] warning: {prog.path}: smoke test skipped: it needs an LLM", file=sys.stderr)
    except HarnessError as e:
        lines = [x.strip() for x in e.reason.splitlines() if x.strip()]
        # One line: the stage and the exception, not the traceback (mstar eval shows that).
        why = lines[0] if len(lines) == 1 else ":".join(lines[0].split(":")[:2]) + ": " + lines[-1]
        raise HarnessError(e.path, f"{why}: fix the program (mstar eval {e.path} --sandbox inline shows the traceback)") from None
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    return ExportSource(label=label, origin=origin, program=prog, smoke=smoke)
