"""``llm_crossover``: merge two parents (from different islands; the engine picks them) into one.

The model sees both sources with their scores by category and answers with a whole merged program
or with edits against parent A; the child goes through the same compile / validate / smoke / fix
loop as ``llm_reflect`` (``llm_loop``). A child equal to either parent is no change.
"""

from __future__ import annotations

from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView, Proposal
from mstar.evolve.operators.llm_loop import (
    effective_source,
    fmt_categories,
    fmt_score,
    prompt,
    propose_with_fixes,
)

SYSTEM = ("You are an expert Python engineer who designs memory systems for LLM agents. You combine "
          "programs into one that is better than each, and always keep their contract.")


def build_messages(a: ParentView, b: ParentView, src_a: str, src_b: str, ctx: OperatorContext) -> list[dict[str, str]]:
    user = prompt("crossover", budget=ctx.budget_tokens, contract=prompt("harness_contract"),
                  score_a=fmt_score(a.score), categories_a=fmt_categories(a.by_category), source_a=src_a,
                  score_b=fmt_score(b.score), categories_b=fmt_categories(b.by_category), source_b=src_b,
                  format=prompt("edit_format"))
    user += f"\n\n(request {ctx.rng.getrandbits(32):08x})"  # see llm_reflect.build_messages
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class LLMCrossover:
    name = "llm_crossover"
    needs_llm = True
    arity = 2

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        if ctx.llm is None:
            raise OperatorFailed("no_llm", "llm_crossover needs a model (--model)")
        if len(parents) < 2:
            raise OperatorFailed("arity", "llm_crossover needs two parents")
        a, b = parents[0], parents[1]
        src_a, src_b = effective_source(a), effective_source(b)
        res = propose_with_fixes(ctx.llm, build_messages(a, b, src_a, src_b, ctx), src_a,
                                 [a.source, b.source, src_a, src_b], ctx)
        return Proposal(source=res.source, operator=self.name, parents=[a.id, b.id], note=res.note,
                        llm_calls=res.llm_calls)
