"""``llm_reflect``: M*-style reflective code evolution (docs/ARCHITECTURE.md#evolution).

The model sees the parent's source, a sample of its failed probes with the stage each failed at,
its per-category scores, the lineage log with regressions marked, and a reference program; it
answers with SEARCH/REPLACE edits (or a full rewrite). The child is compiled, validated and
smoke-run; errors go back to the model, up to three calls in total (``llm_loop``).

Options (``ctx.options``): ``reflect_failures`` (failed probes shown, default 8),
``reference_chars`` (how much of the reference source, default 6000), ``llm_tries`` (default 3),
``temperature``, ``smoke_sandbox`` (default: the run's ``--sandbox``).
"""

from __future__ import annotations

from mstar.evolve.operators.base import (
    FailedProbe,
    LineageEntry,
    OperatorContext,
    OperatorFailed,
    ParentView,
    Proposal,
)
from mstar.evolve.operators.llm_loop import (
    effective_source,
    fmt_categories,
    fmt_score,
    prompt,
    propose_with_fixes,
    trim,
)

SYSTEM = ("You are an expert Python engineer who designs memory systems for LLM agents. You change "
          "programs with small, precise edits and always keep their contract.")


def render_failures(failures: list[FailedProbe], limit: int) -> str:
    if not failures:
        return "(no failed questions recorded)"
    out = []
    for i, f in enumerate(failures[:limit], 1):
        recall = "" if f.recall is None else f", evidence recall {f.recall:.2f}"
        lines = [f"{i}. [{f.stage}] ({f.category}{recall}) Q: {f.question}"]
        if f.answer:
            lines.append(f"   expected answer: {trim(f.answer, 200)}")
        for ev in f.evidence_texts[:3]:
            lines.append(f"   evidence: {trim(ev, 240)}")
        if f.context_excerpt:
            lines.append(f"   memory returned (excerpt): {trim(f.context_excerpt, 300)}")
        out.append("\n".join(lines))
    return "\n".join(out)


def render_lineage(lineage: list[LineageEntry]) -> str:
    if not lineage:
        return "(a seed: no history yet)"
    out = []
    for e in lineage:
        mark = " REGRESSION" if e.regression else ""
        note = f" - {e.note}" if e.note else ""
        out.append(f"- {e.program_id[:12]} by {e.operator}: score {fmt_score(e.score)} "
                   f"(parent {fmt_score(e.parent_score)}){mark}{note}")
    return "\n".join(out)


def render_reference(ref: ParentView | None, chars: int) -> str:
    if ref is None:
        return "(none available)"
    return (f"{ref.name} (score {fmt_score(ref.score)}; by category: {fmt_categories(ref.by_category)})\n"
            f"```python\n{trim(ref.source, chars)}\n```")


def build_messages(parent: ParentView, ctx: OperatorContext, source: str) -> list[dict[str, str]]:
    opts = ctx.options
    user = prompt(
        "reflect", budget=ctx.budget_tokens, contract=prompt("harness_contract"), source=source,
        score=fmt_score(parent.score),
        categories=fmt_categories(parent.by_category),
        failures=render_failures(parent.failures, int(opts.get("reflect_failures", 8))),
        lineage=render_lineage(parent.lineage),
        reference=render_reference(ctx.reference, int(opts.get("reference_chars", 6000))),
        format=prompt("edit_format"))
    # A request id drawn from the proposal's own random stream: two proposals from the same parent
    # are two questions (the ledger caches by exact prompt), and a resumed run asks the same ones.
    user += f"\n\n(request {ctx.rng.getrandbits(32):08x})"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class LLMReflect:
    name = "llm_reflect"
    needs_llm = True
    arity = 1

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        if ctx.llm is None:
            raise OperatorFailed("no_llm", "llm_reflect needs a model (--model)")
        parent = parents[0]
        source = effective_source(parent)
        res = propose_with_fixes(ctx.llm, build_messages(parent, ctx, source), source,
                                 [parent.source, source], ctx)
        return Proposal(source=res.source, operator=self.name, parents=[parent.id], note=res.note,
                        llm_calls=res.llm_calls)
