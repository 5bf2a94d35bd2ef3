"""Errors that cross module boundaries. Each one says which file, field or flag is at fault."""

from __future__ import annotations


class MstarError(Exception):
    """Base class: an error mstar reports to the user as one clear message, without a traceback."""


class DataError(MstarError):
    """A task data file that cannot be used. Nothing from it is used, not even the valid part."""

    def __init__(self, path: object, message: str, field: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        where = self.path or "--data"  # no file at all: the flag that names one
        if field:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


class HarnessError(MstarError):
    """A harness program that does not meet the contract of docs/ARCHITECTURE.md#harness-contract."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        loc = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{loc}: {message}")

    def __reduce__(self):  # picklable with its own arguments (Ray sends exceptions between processes)
        return (type(self), (self.path, self.reason, self.line))


class CandidateFailure(MstarError):
    """A harness misbehaved while being evaluated (crash, timeout, OOM, junk output, over budget ...).

    ``reason`` is a short machine-readable tag (e.g. ``"crash"``, ``"timeout"``, ``"oom"``);
    ``detail`` is the human-readable explanation (traceback tail, limit hit ...).
    """

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def __reduce__(self) -> tuple:
        # Pickled as (reason, detail), not as the message: it crosses Ray (a quota the broker actor enforces).
        return (type(self), (self.reason, self.detail))


class LLMUnavailable(MstarError):
    """The harness asked for an LLM but the run has no model (offline run). Never faked."""


class BudgetExceeded(MstarError):
    """An LLM call would cross the run's hard USD budget; it was refused."""


class ModelUnreachable(BudgetExceeded):
    """The run's model stopped answering (several calls in a row failed for good). In ``mstar evolve``
    this halts the run like a spent budget: the evaluation in flight is dropped, not scored, and the
    run stops resumable (``--resume`` once the server is back)."""


class UsageError(MstarError):
    """A command-line flag or argument that cannot be used."""


class InfrastructureError(MstarError):
    """Something the run depends on went away (the Docker engine, a Ray node, the broker actor).

    Never the candidate's fault, so never recorded as a candidate failure: the executor pauses and
    retries the evaluation, and when the fault outlasts the run's patience the run stops, resumable.
    ``what`` names the part that failed (``"docker"``, ``"ray"``, ``"broker"``).
    """

    def __init__(self, what: str, detail: str):
        self.what = what
        self.detail = detail
        super().__init__(f"{what}: {detail}")

    def __reduce__(self):  # raised in Ray workers: must survive the trip to the driver intact
        return (type(self), (self.what, self.detail))


class LLMError(MstarError):
    """A model call failed for good (after the broker's retries, or an error retrying cannot fix: the
    server is down, the prompt overflows the context window ...). A harness may catch it as
    ``toolkit.LLMError``; anywhere else it fails the probe or the candidate it belongs to, never the run."""
