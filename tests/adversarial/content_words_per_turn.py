"""Adversarial harness (content_words_per_turn): each ranked turn with its stop words dropped, its content words in order, one honest source per item.

Data for tests/test_adversarial.py (not a test): it must score (almost) nothing on evidence recall.
Run it yourself: ``mstar eval tests/adversarial/content_words_per_turn.py --task locomo --data PATH --split test``.
"""

import re

import bm25s

INSTRUCTIONS = (
    "The memory below holds past conversation turns, most relevant first, each as 'speaker: text'. "
    "Answer the question from these turns. Use the names and details exactly as they appear. "
    "If the turns do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


# --- encode: event -> records -------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [
        {"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time")}
    ]


# --- index: build retrieval structures over all records -------------------------------------------
def index(records, state, toolkit, knobs):
    retriever = bm25s.BM25(k1=knobs["k1"], b=knobs["b"])
    retriever.index([terms(r["text"]) or [""] for r in records], show_progress=False)
    state["bm25"] = retriever


# --- retrieve: query -> [(record index, score)], best first ---------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    if not records or not q:
        return []
    k = min(knobs["top_k"], len(records))
    docs, scores = state["bm25"].retrieve([q], k=k, show_progress=False)
    return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


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
    for i, _ in hits:
        t = " ".join(w for w in re.findall(r"\w+", records[i]["text"]) if w.lower() not in _STOP)
        n = toolkit.count_tokens(t)
        if not t or used + n > budget:
            continue
        used += n
        lines.append(t)
        items.append({"text": t, "sources": list(records[i]["sources"])})
    return {"context": "\n".join(lines), "items": items}


def maintain(phase, records, state, toolkit, knobs):
    return records


class Memory:
    """The standard driver of a modular harness: records in a list, components called in order."""

    def __init__(self, toolkit, knobs):
        self.toolkit, self.knobs = toolkit, knobs
        self.records, self.state, self.dirty = [], {}, False

    def write(self, event):
        for rec in encode(event, self.toolkit, self.knobs):
            rec["seq"] = len(self.records)
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
