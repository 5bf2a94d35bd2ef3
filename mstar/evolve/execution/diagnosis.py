"""Failure diagnosis of missed probes, at the stage where the evidence was lost (docs/ARCHITECTURE.md#scoring).

For every probe whose evidence recall is below 1, each missing evidence event is placed at the first
stage of the memory pipeline that lost it:

- ``not_stored``     the harness's ``dump()`` has no record that lists the event and carries its text
                     (by the scorer's own support rule), so no read could ever have returned it;
- ``cut_by_budget``  the same query read again at ``budget * diagnose_factor`` tokens credits the
                     event: the harness ranked it, but below what fits the budget;
- ``not_retrieved``  stored, but not returned even with the larger budget.

A probe's stage is the most upstream stage among its missing events (a write-side loss is the one to
fix first). In LLM mode a probe whose evidence all came back but whose answer the judge (or, without a
judge, token F1 below 0.5) found wrong is ``answered_wrong``: the instructions or the context's form
are to blame, not retrieval. Probes that failed outright are ``over_budget`` (the context did not fit) or ``error``.
Without a ``dump()`` nothing can be said about storage, and without the wide read (diagnose_factor 0)
nothing about the budget: such probes fall back to ``not_retrieved``.
"""

from __future__ import annotations

from mstar.episodes import Episode
from mstar.evaluate import EpisodeResult
from mstar.evolve.operators.base import FailedProbe
from mstar.scoring.evidence import EventIndex, supports
from mstar.tokens import words

STAGES = ("not_stored", "not_retrieved", "cut_by_budget", "answered_wrong", "over_budget", "error")
EVIDENCE_CHARS = 300
ERROR_CHARS = 400  # the tail: a traceback's innermost frames and the exception line


def stored_events(dump: list[dict] | None, index: EventIndex, wanted: set[str]) -> set[str] | None:
    """The ids of ``wanted`` that some dumped record lists and carries; None when there is no dump."""
    if dump is None:
        return None
    found: set[str] = set()
    for rec in dump:
        srcs = rec.get("sources")
        if not isinstance(srcs, list):
            continue
        hits = [s for s in srcs if isinstance(s, str) and s in wanted and s not in found]
        if not hits:
            continue
        text = str(rec.get("text", ""))
        item_words = frozenset(words(text))
        for s in hits:
            # No answer string here: storage is judged on the event's own content.
            if supports(text, item_words, s, index, None):
                found.add(s)
    return found


def diagnose(episode: Episode, result: EpisodeResult, budget: int) -> list[FailedProbe]:
    index = EventIndex.of(episode.events)
    probes = {p.id: p for p in episode.probes}
    missed = [ps for ps in result.probes
              if ps.probe_id in probes and (_recall_missed(ps) or _answer_wrong(ps))]
    wanted = {e for ps in missed for e in probes[ps.probe_id].evidence}
    stored = stored_events(result.dump, index, wanted)
    out = []
    for ps in missed:
        probe = probes[ps.probe_id]
        credited = set(ps.credited)
        missing = [e for e in probe.evidence if e not in credited]
        if ps.error:
            stage = "over_budget" if ps.error.startswith("over_budget") else "error"
        elif not _recall_missed(ps):
            stage = "answered_wrong"
        elif stored is not None and any(e not in stored for e in missing):
            stage = "not_stored"
        elif ps.wide_credited is not None and missing and all(e in ps.wide_credited for e in missing):
            stage = "cut_by_budget"
        else:
            stage = "not_retrieved"
        out.append(FailedProbe(
            probe_id=probe.id, episode_id=episode.id, category=probe.category, question=probe.question,
            stage=stage, recall=ps.evidence_recall,
            evidence_texts=[_evidence_text(index, e) for e in missing],
            context_excerpt=ps.context_excerpt, answer=None if probe.answer is None else str(probe.answer),
            error=ps.error[-ERROR_CHARS:] if ps.error else None,
        ))
    return out


def _recall_missed(ps) -> bool:
    return ps.evidence_recall is not None and ps.evidence_recall < 1.0


def _answer_wrong(ps) -> bool:
    if ps.qa_judge is not None:
        return ps.qa_judge < 1.0
    return ps.qa_f1 is not None and ps.qa_f1 < 0.5


def _evidence_text(index: EventIndex, event_id: str) -> str:
    ev = index.events.get(event_id)
    if ev is None:
        return f"[{event_id}] (unknown event)"
    who = f"{ev.speaker}: " if ev.speaker else ""
    return f"[{event_id}] {who}{ev.text}"[:EVIDENCE_CHARS]
