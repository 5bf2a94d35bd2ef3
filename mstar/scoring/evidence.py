"""Offline scoring of one read against one probe (DESIGN §6).

The attribution rule (documented in docs/SCORING.md): an item *carries* an evidence event when

1. the item is **shown**: its text appears verbatim (whitespace-normalised) in the context the agent
   sees, and the context fits the token budget;
2. the item **lists** the event's id in ``sources``; and
3. the item's text **supports** the event: at least ``COVERAGE`` of the event's distinct content words
   (lower-cased word tokens minus a small stop list) occur in the item text; an event with no content
   word must appear verbatim; or, failing that, the item contains the probe's gold answer string
   (at least one content word), which credits abstractive summaries that kept the fact.

Listing ids is free; carrying the text is not. A harness that returns every id in one short string
covers almost no event's words and scores about 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mstar.episodes import Event, Probe
from mstar.harness.contract import ReadResult
from mstar.tokens import count_tokens, words

COVERAGE = 0.5
NDCG_K = 10

STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from as is are was were be been being am
    i me my mine we us our you your yours he him his she her hers it its they them their this that these those
    do does did done have has had not no yes oh ok okay just very really too also there here what which who
    whom how when where why will would can could should shall may might must s t ll re ve d m""".split()
)

_NORM_RE = re.compile(r"[^\w\s]")


def normalise_ws(text: str) -> str:
    # str.split() splits on exactly what re's \s matches (str.isspace), ~5x faster than a regex sub.
    return " ".join(text.split())


def normalise_answer(text: str) -> str:
    return normalise_ws(_NORM_RE.sub(" ", text.lower()))


def contains_phrase(haystack: str, needle: str) -> bool:
    """Whole-word containment of normalised ``needle`` in normalised ``haystack`` ("2" is not in "2023")."""
    n = normalise_answer(needle)
    return bool(n) and f" {n} " in f" {normalise_answer(haystack)} "


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in words(text) if w not in STOPWORDS)


@dataclass
class EventIndex:
    """Per-episode lookup of event texts and their content words, built once per episode."""

    events: Mapping[str, Event]
    _cw: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, events: list[Event]) -> EventIndex:
        return cls({e.id: e for e in events})

    def content(self, event_id: str) -> frozenset[str]:
        cw = self._cw.get(event_id)
        if cw is None:
            ev = self.events.get(event_id)
            cw = content_words(ev.text) if ev is not None else frozenset()
            self._cw[event_id] = cw
        return cw


def supports(item_text: str, item_words: frozenset[str], event_id: str, index: EventIndex, answer: str | None) -> bool:
    ev = index.events.get(event_id)
    if ev is None:
        return False
    cw = index.content(event_id)
    if cw:
        if len(cw & item_words) >= COVERAGE * len(cw):
            return True
    elif normalise_ws(ev.text).lower() in normalise_ws(item_text).lower():
        return True
    return bool(answer) and bool(content_words(answer)) and contains_phrase(item_text, answer)


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
    """Score one read. A context over ``budget`` tokens is an error for the probe: every quality metric is 0."""
    tokens = count_tokens(result.context)
    answer = _answer_text(probe)
    score = ProbeScore(probe_id=probe.id, category=probe.category, context_tokens=tokens, read_ms=read_ms)
    recall_applies = probe.scored_for_recall
    sessions_apply = bool(probe.evidence_sessions) and not probe.abstention
    if tokens > budget:
        score.error = f"over_budget: context has {tokens} tokens, budget is {budget}"
        score.evidence_recall = 0.0 if recall_applies else None
        score.ndcg = 0.0 if recall_applies else None
        score.session_recall = 0.0 if sessions_apply else None
        score.answer_containment = 0.0 if answer else None
        return score

    ctx_norm = normalise_ws(result.context)
    evidence = set(probe.evidence)
    ev_sessions = set(probe.evidence_sessions)
    credited: list[str] = []
    credited_set: set[str] = set()
    sessions_hit: set[str] = set()
    listed: set[str] = set()
    gains: list[float] = []
    for item in result.items:
        text = normalise_ws(item.text)
        if not text or text not in ctx_norm:
            gains.append(0.0)
            continue
        listed.update(item.sources)
        wanted = [s for s in item.sources if s in evidence or (ev_sessions and s in index.events)]
        if not wanted:
            gains.append(0.0)
            continue
        item_words = frozenset(words(item.text))
        gain = 0.0
        for src in dict.fromkeys(wanted):
            if src in credited_set and not ev_sessions:
                continue
            if not supports(item.text, item_words, src, index, answer):
                continue
            if src in evidence and src not in credited_set:
                credited_set.add(src)
                credited.append(src)
                gain = 1.0
            if ev_sessions:
                sess = index.events[src].session
                if sess in ev_sessions:
                    sessions_hit.add(sess)
        gains.append(gain)

    if recall_applies:
        score.evidence_recall = len(credited_set) / len(evidence)
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
