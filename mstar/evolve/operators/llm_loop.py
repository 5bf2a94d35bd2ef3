"""What the LLM operators share: prompt files, the checks a child must pass, and the fix loop.

A reply becomes a child by ``patch.apply_reply``; the child must then compile, pass the harness
validator (``from_source``) and a smoke run in a sandbox. Any failure is sent back to the model with
``prompts/fix.md`` (within the same conversation, so the model sees what it wrote), up to ``tries``
model calls in total; after that the operator fails with the last reason, its detail listing every
try's reason.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from string import Template
from typing import Any

from pydantic import BaseModel

from mstar.errors import LLMError
from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView
from mstar.evolve.operators.patch import PatchError, apply_reply

MAX_TRIES = 3


def prompt(name: str, **values: Any) -> str:
    """A prompt file from ``prompts/`` with ``$placeholders`` filled (the values are not re-scanned)."""
    text = importlib.resources.files("mstar.evolve.operators").joinpath("prompts", f"{name}.md").read_text("utf-8")
    return Template(text).substitute({k: str(v) for k, v in values.items()})


def effective_source(parent: ParentView) -> str:
    """The parent's source with its current knob values as the KNOBS defaults: the model edits the
    program as it actually ran, and the child (which runs with its own defaults) keeps the tuning."""
    from mstar.evolve.store.run_store import freeze_knobs

    if not parent.knobs:
        return parent.source
    try:
        return freeze_knobs(parent.source, parent.knobs)
    except (SyntaxError, ValueError):
        return parent.source


def fmt_score(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def fmt_categories(by_category: dict[str, float]) -> str:
    if not by_category:
        return "(not known)"
    return ", ".join(f"{k} {v:.3f}" for k, v in sorted(by_category.items()))


def trim(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters cut]"


class ChildCheckError(Exception):
    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def check_child(source: str, smoke_backend: Any = None) -> None:
    """Compile, validate and smoke-run a child (``mstar.harness.validate``, in ``smoke_backend``);
    raise ``ChildCheckError`` with a reason tag. A child that stops at its first model call cannot be
    smoke-run without spending the run's model on it: the engine decides whether this run can evaluate
    it (breed.admit: needs_llm)."""
    from mstar.harness.validate import ValidationError, validate_source

    try:
        validate_source(source, smoke_backend, name="child")
    except ValidationError as e:
        raise ChildCheckError(e.reason, e.detail) from None


def smoke_backend_for(ctx: OperatorContext) -> tuple[Any, bool]:
    """The run's sandbox (``ctx.sandbox``). ``--op-opt smoke_sandbox=NAME`` overrides it only when the
    user names one (``inline`` included: asked for, so allowed); with neither, the validator's default
    (the process sandbox). Returns (backend, owned): an owned one is the caller's to close."""
    name = ctx.options.get("smoke_sandbox")
    if name:
        from mstar.sandbox.registry import get_backend

        return get_backend(str(name), **({} if name == "inline" else {"spares": 0})), True
    return ctx.sandbox, False


class LoopResult(BaseModel):
    source: str
    note: str
    llm_calls: int


def propose_with_fixes(llm: Callable[..., str], messages: list[dict[str, str]], base_source: str,
                       originals: list[str], ctx: OperatorContext,
                       check: Callable[[str], None] | None = None) -> LoopResult:
    """Ask, apply, check; on failure explain and ask again. ``originals`` are the parents' sources: a
    child equal to one of them is no change. Raises ``OperatorFailed`` after ``MAX_TRIES`` calls."""
    tries = int(ctx.options.get("llm_tries", MAX_TRIES))
    kw: dict[str, Any] = {}
    if "temperature" in ctx.options:
        kw["temperature"] = float(ctx.options["temperature"])
    owned = None
    if check is None:
        backend, own = smoke_backend_for(ctx)
        owned = backend if own else None

        def check(src: str) -> None:
            check_child(src, backend)

    try:
        return _loop(llm, messages, base_source, originals, tries, kw, check)
    finally:
        close = getattr(owned, "close", None)
        if close is not None:
            close()


def _loop(llm: Callable[..., str], messages: list[dict[str, str]], base_source: str, originals: list[str],
          tries: int, kw: dict[str, Any], check: Callable[[str], None]) -> LoopResult:
    messages = list(messages)
    base = base_source
    reason, detail = "no_reply", ""
    log: list[str] = []  # every try's reason: the proposal's record keeps them all, not just the last
    for attempt in range(1, tries + 1):
        try:
            reply = llm(messages, **kw)
        except LLMError as e:
            log.append(f"try {attempt}: llm_error: {str(e)[:300]}")
            raise OperatorFailed("llm_error", " | ".join(log)[:1500]) from None
        child: str | None = None
        try:
            child, parsed = apply_reply(base, reply)
            if child.strip() in {o.strip() for o in originals}:
                raise ChildCheckError("no_change", "the program is identical to its parent; make a real change")
            check(child)
            note = parsed.rationale or "(no rationale given)"
            return LoopResult(source=child, note=note[:1000], llm_calls=attempt)
        except (PatchError, ChildCheckError) as e:
            reason, detail = e.reason, e.detail
            log.append(f"try {attempt}: {reason}: {trim(detail, 300)}")
        if attempt == tries:
            break
        # Edits in the next answer apply to what the model produced, when its patch applied; else to
        # the same program as before (its SEARCH lines did not match it).
        if child is not None and reason != "no_change":
            base = child
            where = "Your edits were applied; the result is below. Fix it (edits apply to this program):\n" \
                    f"```python\n{child}\n```"
        else:
            where = "Nothing was applied; edits apply to the same program as before."
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": prompt("fix", attempt=attempt, max_tries=tries, reason=reason,
                                                        detail=trim(detail, 2000), base=where)}]
    raise OperatorFailed(reason, f"after {tries} tries: " + " | ".join(log)[:1480])
