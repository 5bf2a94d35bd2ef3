"""MemoryBank-style memory: Ebbinghaus forgetting with reinforcement on recall.

Idea: MemoryBank (Zhong et al., 2023, "MemoryBank: Enhancing Large Language Models with Long-Term
Memory") gives every memory a strength S and a retention R = exp(-t / S) after the Ebbinghaus
forgetting curve, t being the time since the memory was last recalled. Recalling a memory reinforces
it (S grows by ``strength_gain``, t resets to 0); at ``manage`` time memories whose retention fell
below ``forget_below`` are forgotten. Retrieval is BM25 (``bm25s``) relevance, scaled mildly by retention.
Initial strength grows with a documented offline importance heuristic: a turn naming numbers or
capitalised names, or with many content words, starts stronger (S0 x (1 + importance), importance in [0, 1]).
Time ``t`` is counted in sessions (``clock="sessions"``: one step per ``manage("session_end")``) or in
days between the event/recall time and the newest time seen (``clock="days"``).
Expectation (by design, as in the paper): what is never recalled is eventually forgotten, so on a
long stream read only at the end it loses the oldest unimportant turns.
Simplifies: no daily event summaries or user portrait (those need an LLM); dense retrieval replaced by BM25.
Expectation (synthetic, tests/test_seeds_synthetic.py): with the defaults a 12-session episode forgets
nothing and ranks like BM25; with fast forgetting (``initial_strength=1``) the dump shrinks, turns
recalled mid-stream survive and never-recalled ones are forgotten.
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import math
import re
from datetime import datetime

import bm25s

INSTRUCTIONS = (
    "The memory below holds the past conversation turns you still remember, most relevant first, each "
    "as 'speaker: text'. Memories fade unless recalled, so older details may be missing. Answer from these "
    "turns, using names and details exactly as they appear; if the answer is not there, say so."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "clock": {"type": "cat", "choices": ["sessions", "days"], "default": "sessions"},
    "initial_strength": {"type": "float", "low": 0.5, "high": 100.0, "log": True, "default": 8.0},
    "strength_gain": {"type": "float", "low": 0.0, "high": 20.0, "default": 4.0},
    "forget_below": {"type": "float", "low": 0.0, "high": 0.5, "default": 0.05},
    "reinforce_top": {"type": "int", "low": 0, "high": 20, "default": 5},
    "retention_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.2},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

_WORD = re.compile(r"\w\w+")
_NUMBER = re.compile(r"\b\d[\d,.:/-]*\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def importance(text):
    """Offline importance in [0, 1]: numbers, names and content-word count (a documented heuristic)."""
    numbers = len(_NUMBER.findall(text))
    names = len(_NAME.findall(text))
    content = len(set(terms(text)))
    return min(1.0, 0.3 * min(numbers, 2) / 2 + 0.3 * min(names, 2) / 2 + 0.4 * min(content, 12) / 12)


def days(iso):
    try:
        return datetime.fromisoformat(iso).timestamp() / 86400.0
    except (TypeError, ValueError):
        return None


# --- encode: event -> records with a strength -----------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
             "speaker": speaker, "strength": knobs["initial_strength"] * (1.0 + importance(event["text"]))}]


# --- retention: R = exp(-t / S) on the harness clock ----------------------------------------------
def now(records, state, knobs):
    if knobs["clock"] == "days":
        seen = [d for d in (days(r.get("time")) for r in records) if d is not None]
        return max(seen + [state.get("mb_latest_day", 0.0)]) if seen else state.get("mb_latest_day", 0.0)
    return state.get("mb_clock", 0)


def retention(record, state, knobs, t_now):
    last = state.get("mb_last", {}).get(record["seq"])
    if last is None:
        last = days(record.get("time")) if knobs["clock"] == "days" else state.get("mb_born", {}).get(record["seq"])
    if last is None:
        return 1.0
    strength = record.get("strength") or knobs["initial_strength"]
    return math.exp(-max(0.0, t_now - last) / strength)


# --- index: BM25 over the remembered turns --------------------------------------------------------
def index(records, state, toolkit, knobs):
    retriever = bm25s.BM25(k1=knobs["k1"], b=knobs["b"])
    retriever.index([terms(r["text"]) or [""] for r in records], show_progress=False)
    state["bm25"] = retriever


# --- retrieve: relevance x retention; the best hits are recalled (reinforced at the next manage) ---
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    if not records or not q:
        return []
    k = min(knobs["top_k"], len(records))
    docs, scores = state["bm25"].retrieve([q], k=k, show_progress=False)
    t_now = now(records, state, knobs)
    w = knobs["retention_weight"]
    hits = [(int(d), float(s) * (1.0 - w + w * retention(records[int(d)], state, knobs, t_now)))
            for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
    hits.sort(key=lambda h: -h[1])
    when = days(query.get("time")) if knobs["clock"] == "days" else t_now
    recalled = state.setdefault("mb_recalled", {})
    for i, _ in hits[:knobs["reinforce_top"]]:
        recalled[records[i]["seq"]] = when if when is not None else t_now
    return hits


# --- expand: add or reorder hits (none here) ------------------------------------------------------
def expand(hits, records, state, knobs):
    return hits


# --- pack: hits -> the read result, within the token budget ---------------------------------------
def render(record, knobs):
    if knobs.get("show_time") and record.get("time"):
        return f"[{record['time']}] {record['text']}"
    return record["text"]


def pack(query, hits, records, toolkit, knobs):
    budget = query.get("budget", 1024)
    used, lines, items = 0, [], []
    for i, _score in hits:
        text = render(records[i], knobs)
        n = toolkit.count_tokens(text)
        if used + n > budget:
            if knobs.get("fill") == "stop":
                break
            continue
        used += n
        lines.append(text)
        items.append({"text": text, "sources": list(records[i]["sources"])})
    return {"context": "\n".join(lines), "items": items}


# --- maintain: advance the clock, reinforce what was recalled, forget what faded -------------------
def maintain(phase, records, state, toolkit, knobs):
    if phase != "session_end":
        return records
    born, last = state.setdefault("mb_born", {}), state.setdefault("mb_last", {})
    clock = state.get("mb_clock", 0)
    for r in records:
        born.setdefault(r["seq"], clock)
    state["mb_clock"] = clock + 1
    for seq, when in state.pop("mb_recalled", {}).items():
        for r in records:
            if r["seq"] == seq:
                r["strength"] = (r.get("strength") or knobs["initial_strength"]) + knobs["strength_gain"]
                last[seq] = when
    t_now = now(records, state, knobs)
    if knobs["clock"] == "days":
        state["mb_latest_day"] = t_now
    return [r for r in records if retention(r, state, knobs, t_now) >= knobs["forget_below"]]


class Memory:
    """The standard driver of a modular harness: records in a list, components called in order."""

    def __init__(self, toolkit, knobs):
        self.toolkit, self.knobs = toolkit, knobs
        self.records, self.state, self.dirty = [], {}, False

    def write(self, event):
        for rec in encode(event, self.toolkit, self.knobs):
            rec["seq"] = self.state.get("next_seq", len(self.records))
            self.state["next_seq"] = rec["seq"] + 1
            self.records.append(rec)
        self.dirty = True

    def read(self, query):
        if self.dirty:
            index(self.records, self.state, self.toolkit, self.knobs)
            self.dirty = False
        hits = retrieve(query, self.records, self.state, self.toolkit, self.knobs)
        hits = expand(hits, self.records, self.state, self.knobs)
        return pack(query, hits, self.records, self.toolkit, self.knobs)

    def manage(self, phase):
        self.records = maintain(phase, self.records, self.state, self.toolkit, self.knobs)
        self.dirty = True

    def dump(self):
        return [{"text": r["text"], "sources": r["sources"]} for r in self.records]
