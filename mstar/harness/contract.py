"""Shape checks of what a harness returns at run time (docs/ARCHITECTURE.md#harness-contract)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mstar.errors import CandidateFailure


class Item(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    sources: list[str] = Field(default_factory=list)


class ReadResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    context: str
    items: list[Item] = Field(default_factory=list)


# Past this a read result is junk, not a memory context (the scorer's budget is ~1k tokens).
MAX_READ_CHARS = 2_000_000


def check_read_result(obj: Any) -> ReadResult:
    """Validate ``Memory.read``'s return value; a bad one fails the candidate with reason ``bad_output``."""
    if not isinstance(obj, dict):
        raise CandidateFailure("bad_output", f"read() must return a dict, got {type(obj).__name__}")
    ctx = obj.get("context")
    if isinstance(ctx, str) and len(ctx) > MAX_READ_CHARS:
        # Not an over-budget miss but junk: the whole candidate fails (docs/ARCHITECTURE.md#sandbox), not just the probe.
        raise CandidateFailure("context_too_long",
                               f"read() returned a context of {len(ctx):,} characters (limit {MAX_READ_CHARS:,})")
    try:
        return ReadResult.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise CandidateFailure("bad_output", f"read() result field {loc!r}: {err['msg']}") from None


def check_dump(obj: Any) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise CandidateFailure("bad_output", "dump() must return a list of dicts")
    return obj
