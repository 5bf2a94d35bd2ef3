"""Full context: everything stored, the most recent turns that fit the budget shown.

Idea: the "long-context" baseline of LoCoMo and LongMemEval: no retrieval at all, the agent reads the
conversation itself. Since a whole conversation (12k-24k tokens) does not fit a 1k budget, it keeps the
most recent turns that fit, presented in chronological order.
Simplifies: no summarisation of what falls outside the budget.
Expectation (synthetic, tests/test_seeds_synthetic.py): only a budget's worth of the latest turns can
come back (the floor every retrieval seed beats by a wide margin).
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

INSTRUCTIONS = (
    "The memory below is the most recent part of the conversation, oldest first, as 'speaker: text'. "
    "Answer the question from it. If it does not contain the answer, say that it is not in memory."
)

KNOBS = {
    "show_time": {"type": "bool", "default": True},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "stop"},
}


# --- encode: event -> records -------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time")}]


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
