"""Offline scoring of one read against one probe.

The rule (docs/SCORING.md says why each number is what it is): an event E is credited when

1. the read fits the budget: at most ``budget`` tokens and ``CHARS_PER_TOKEN * budget`` characters;
2. an item that lists E in ``sources`` is **shown**: its whitespace-normalised text occurs in the
   whitespace-normalised context, at an occurrence no earlier item with the same text took;
3. that occurrence **holds** E as an in-order span of word tokens (``mstar.scoring.spans``: at least 95 %
   of E's tokens in order within a window at most 5 % longer than E), in tokens no earlier credited
   event claimed; the matched window is then claimed.

There is no credit for containing the answer string (``answer_containment`` is reported on its own).
Session recall and NDCG count the same credited spans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mstar.episodes import Event, Probe
from mstar.harness.contract import ReadResult
from mstar.scoring.spans import ContextSpans, holds, normalise_ws
from mstar.tokens import count_tokens, words

NDCG_K = 10
# Characters allowed per budget token. Measured (docs/SCORING.md): LoCoMo turns average 4.2 chars/token,
# LongMemEval_S turns 4.8; the most character-dense ~1k-token run of consecutive turns is 4.7 (LoCoMo)
# and 10.9 (LongMemEval, code). 16 is ~1.5x that worst case; a megabyte "word" no longer fits 1 token.
CHARS_PER_TOKEN = 16

# Used by the dense embedder's bag of words; no longer part of the scoring rule.
STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from as is are was were be been being am
    i me my mine we us our you your yours he him his she her hers it its they them their this that these those
    do does did done have has had not no yes oh ok okay just very really too also there here what which who
    whom how when where why will would can could should shall may might must s t ll re ve d m""".split()
)

_NORM_RE = re.compile(r"[^\w\s]")

__all__ = ["normalise_ws", "EventIndex", "ProbeScore", "score_read", "supports", "contains_phrase"]


def normalise_answer(text: str) -> str:
    return normalise_ws(_NORM_RE.sub(" ", text.lower()))


def contains_phrase(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised ``needle`` in normalised ``haystack`` ("2" is not in "2023")."""
    n = normalise_answer(needle)
    return bool(n) and f" {n} " in f" {normalise_answer(haystack)} "


def over_budget(context: str, budget: int) -> str | None:
    """Why ``context`` is over ``budget`` (tokens or characters), or None when it fits."""
    tokens = count_tokens(context)
    if tokens > budget:
        return f"over_budget: context has {tokens} tokens, budget is {budget}"
    if len(context) > CHARS_PER_TOKEN * budget:
        return (f"over_budget: context has {len(context):,} characters, budget {budget} tokens allows "
                f"{CHARS_PER_TOKEN * budget:,} ({CHARS_PER_TOKEN} per token)")
    return None


@dataclass
class EventIndex:
    """Per-episode lookup of event texts and their word tokens, built once per episode."""

    events: Mapping[str, Event]
    _words: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, events: list[Event]) -> EventIndex:
        return cls({e.id: e for e in events})

    def words(self, event_id: str) -> list[str]:
        ws = self._words.get(event_id)
        if ws is None:
            ev = self.events.get(event_id)
            ws = words(ev.text) if ev is not None else []
            self._words[event_id] = ws
        return ws


def supports(item_text: str, item_words: object, event_id: str, index: EventIndex, answer: str | None = None) -> bool:
    """Whether ``item_text`` by itself holds event ``event_id`` as an in-order span (for diagnosis of dumps).

    ``item_words`` and ``answer`` are ignored (kept for callers of the earlier signature): the answer string
    never stands in for the event's text.
    """
    ev = index.events.get(event_id)
    return ev is not None and holds(item_text, index.words(event_id), ev.text)


@dataclass
class ProbeScore:
    probe_id: str
    category: str
    context_tokens: int
    read_ms: float
    evidence_recall: float | None = None
    ndcg: float | None = None
    session_recall: float | None = None
    answer_containment: float | None = None
    credited: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    error: str | None = None
    # Filled for missed probes only: the start of the context shown, and the evidence credited when
    # the same query was read again at a larger budget (None: not read again).
    context_excerpt: str = ""
    wide_credited: list[str] | None = None
    # LLM mode only (mstar.scoring.qa): the answer step's answer and its scores.
    answer: str | None = None
    qa_f1: float | None = None
    qa_judge: float | None = None
    qa_error: str | None = None  # the answer step's model call failed (the probe's QA scores are 0)
    judge_unusable: bool = False  # the judge said neither yes nor no (scored 0, counted)

    def metrics(self) -> dict[str, float | None]:
        return {
            "evidence_recall": self.evidence_recall,
            "ndcg@10": self.ndcg,
            "session_recall": self.session_recall,
            "answer_containment": self.answer_containment,
            "qa_f1": self.qa_f1,
            "qa_judge": self.qa_judge,
            "context_tokens": float(self.context_tokens),
            "read_ms": self.read_ms,
        }


def _answer_text(probe: Probe) -> str | None:
    return None if probe.answer is None or str(probe.answer).strip() == "" else str(probe.answer)


def score_read(probe: Probe, result: ReadResult, index: EventIndex, budget: int, read_ms: float = 0.0) -> ProbeScore:
    """Score one read. A context over the budget is an error for the probe: every quality metric is 0."""
    tokens = count_tokens(result.context)
    answer = _answer_text(probe)
    score = ProbeScore(probe_id=probe.id, category=probe.category, context_tokens=tokens, read_ms=read_ms)
    recall_applies = probe.scored_for_recall
    sessions_apply = bool(probe.evidence_sessions) and not probe.abstention
    error = over_budget(result.context, budget)
    if error:
        score.error = error
        score.evidence_recall = 0.0 if recall_applies else None
        score.ndcg = 0.0 if recall_applies else None
        score.session_recall = 0.0 if sessions_apply else None
        score.answer_containment = 0.0 if answer else None
        return score

    spans = ContextSpans(result.context)
    evidence = set(probe.evidence)
    ev_sessions = set(probe.evidence_sessions) if sessions_apply else set()
    credited: list[str] = []
    sessions_hit: set[str] = set()
    listed: set[str] = set()
    gains: list[float] = []
    for item in result.items:
        if spans.exhausted:  # a hostile read's work budget is spent: the rest of its items earn nothing
            gains.append(0.0)
            continue
        occ = spans.occurrence(item.text)
        if occ is None:
            gains.append(0.0)
            continue
        listed.update(item.sources)
        gain = 0.0
        for src in _wanted(item.sources, evidence, ev_sessions, index, credited, sessions_hit):
            if not spans.claim(occ, index.words(src), index.events[src].text):
                continue
            if src in evidence:
                credited.append(src)
                gain = 1.0
            sess = index.events[src].session
            if sess in ev_sessions:
                sessions_hit.add(sess)
        gains.append(gain)

    if recall_applies:
        score.evidence_recall = len(credited) / len(evidence)
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:NDCG_K]))
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(evidence), NDCG_K)))
        score.ndcg = dcg / idcg if idcg else 0.0
    if sessions_apply:
        score.session_recall = len(sessions_hit) / len(ev_sessions)
    if answer:
        score.answer_containment = 1.0 if contains_phrase(result.context, answer) else 0.0
    score.credited = credited
    score.listed = sorted(listed)
    return score


def _wanted(sources: list[str], evidence: set[str], ev_sessions: set[str], index: EventIndex,
            credited: list[str], sessions_hit: set[str]) -> list[str]:
    """The item's sources worth a span, longest text first (so a short event inside a longer one cannot
    take the longer one's tokens first); already-credited evidence and already-hit sessions are skipped."""
    out = []
    for src in dict.fromkeys(sources):
        ev = index.events.get(src)
        if ev is None:
            continue
        if src in evidence and src not in credited:
            out.append(src)
        elif ev.session in ev_sessions and ev.session not in sessions_hit and src not in evidence:
            out.append(src)
    out.sort(key=lambda s: -len(index.words(s)))
    return out
