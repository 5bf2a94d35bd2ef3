"""What one model call, one candidate and one episode may cost: the caps the broker applies.

A weak local model loops to its context limit unless the completion is capped, and an untrusted
harness asks for whatever it likes (``max_tokens=10**9``): so every call gets a ``max_tokens`` no
larger than its purpose's cap (the request is lowered, never refused), whoever sent it. Purposes:

- ``harness``  -- a harness's ``toolkit.llm`` (untrusted);
- ``operator`` -- an LLM operator writing a program (``operator:llm_reflect`` ...);
- ``answer``   -- the answer step of LLM-mode scoring;
- ``judge``    -- the yes/no judge of LLM-mode scoring.

A harness call also has a prompt size cap (characters). With a run budget (USD or tokens), one
candidate's harness calls may use at most ``candidate_share`` of it: a candidate that would go past
it fails with reason ``llm_budget``, and the run goes on. Embedding use is capped per episode
(calls and characters): past either the candidate fails with ``embed_quota``.

These are run options: saved in the run's ``config.json``, the same for ``mstar eval``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

PURPOSES = ("harness", "operator", "answer", "judge")


def purpose_kind(purpose: str) -> str:
    """``operator:llm_reflect`` -> ``operator``; unknown purposes are treated as the harness's (strictest)."""
    base = purpose.split(":", 1)[0]
    return base if base in PURPOSES else "harness"


class LLMLimits(BaseModel):
    # Completion tokens per call, by purpose. The answer is "a short phrase"; the judge says yes or no
    # (a few tokens of slack for "Yes." in models that ignore "exactly one word").
    max_tokens: dict[str, int] = Field(default_factory=lambda: {
        "harness": 512, "operator": 4096, "answer": 64, "judge": 8})
    harness_prompt_chars: int = Field(48_000, ge=1)
    candidate_share: float = Field(0.25, gt=0, le=1)
    embed_calls_per_episode: int = Field(5_000, ge=1)
    embed_chars_per_episode: int = Field(5_000_000, ge=1)
    # One timeout for every model call (eval and evolve alike); the broker retries transient errors twice.
    timeout_s: float = Field(120.0, gt=0)

    def cap(self, purpose: str) -> int:
        kind = purpose_kind(purpose)
        return int(self.max_tokens.get(kind, self.max_tokens.get("harness", 512)))


def parse_max_tokens(text: str | None, base: LLMLimits | None = None) -> LLMLimits:
    """``--max-tokens "harness=256,operator=2048"`` -> limits (unnamed purposes keep their default).
    A bad entry raises ``ValueError`` naming it."""
    limits = (base or LLMLimits()).model_copy(deep=True)
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in PURPOSES:
            raise ValueError(f"{part!r}: expected PURPOSE=N with PURPOSE one of {', '.join(PURPOSES)}")
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value!r} is not a whole number of tokens") from None
        if n < 1:
            raise ValueError(f"{part!r}: the cap must be at least 1 token")
        limits.max_tokens[name] = n
    return limits
