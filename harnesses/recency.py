"""Recency window: only the last N turns are remembered (a sliding-window / buffer memory).

Idea: the simplest working memory of chat agents (e.g. a conversation buffer window): keep the last
``window`` turns, forget everything older at write time, and show what is kept, oldest first, within
the budget. A floor for every other design: it wins only on questions about the very latest turns.
Simplifies: the window counts turns, not tokens.
Expectation (synthetic, tests/test_seeds_synthetic.py): only the last ``window`` turns can come back, so
it recalls only evidence among them and trails BM25 overall by far; its dump never holds more than
``window`` turns.
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

INSTRUCTIONS = (
    "The memory below is the most recent part of the conversation, oldest first, as 'speaker: text'. "
    "Answer the question from it. If it does not contain the answer, say that it is not in memory."
)

KNOBS = {
    "window": {"type": "int", "low": 1, "high": 500, "default": 40},
    "show_time": {"type": "bool", "default": True},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "stop"},
}


# --- encode: event -> records -------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time")}]


# --- maintain-at-write: forget what left the window -------------------------------------------------
def forget(records, knobs):
    excess = len(records) - knobs["window"]
    if excess > 0:
        del records[:excess]


# --- index: nothing to build -----------------------------------------------------------------------
def index(records, state, toolkit, knobs):
    return None


# --- retrieve: every record, newest first ---------------------------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    n = len(records)
    return [(i, float(i + 1) / n) for i in range(n - 1, -1, -1)]


# --- expand: show what fits in chronological order -------------------------------------------------
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
    if knobs.get("chronological", True):
        lines.reverse()
        items.reverse()
    return {"context": "\n".join(lines), "items": items}


# --- maintain: housekeeping at phase boundaries (none here) ---------------------------------------
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
        forget(self.records, self.knobs)
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
