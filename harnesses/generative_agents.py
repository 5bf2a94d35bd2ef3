"""Generative-Agents-style memory stream: recency x importance x relevance.

Idea: the memory stream of Generative Agents (Park et al., 2023, "Generative Agents: Interactive
Simulacra of Human Behavior"): every observation is kept; a read scores each one as
a * recency + b * importance + c * relevance, each term min-max normalised over the stream. Recency
decays exponentially (``decay_per_hour`` ** hours since the memory was created or last retrieved),
relevance is the cosine of ``toolkit.embed`` vectors, importance is the LLM's 1-10 "poignancy" rating
when ``toolkit.has_llm`` (knob ``llm_importance``), else a documented offline heuristic:
0.4 x novelty (share of content words not seen in earlier memories) + 0.3 x names + 0.3 x numbers.
Simplifies: no reflections or plans (LLM-generated higher-level memories); the default weights favour
relevance (the paper uses 1, 1, 1) because questions here are about the past, not the present, and
because retrieval refreshes recency: with many questions asked at the end, the turns earlier questions
retrieved would crowd out the rest (LoCoMo train, hashing embedder: recall 0.36 with w_recency 0.2,
0.41 with 0.05; importance 0.2 helps slightly over 0).
Expectation (synthetic, tests/test_seeds_synthetic.py): relevance is not swamped: at least the recall of
``dense`` with the same embedder, and higher than with the paper's equal weights.
Needs an LLM: no (uses it for importance when present).

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import re
from datetime import datetime

import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation turns chosen for being relevant, important and recent, "
    "best first, each as 'speaker: text'. Answer from these turns, using names and details exactly as "
    "they appear; prefer the most recent turn when two disagree. If the answer is not there, say so."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "w_recency": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.05},
    "w_importance": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.2},
    "w_relevance": {"type": "float", "low": 0.0, "high": 2.0, "default": 1.0},
    "decay_per_hour": {"type": "float", "low": 0.9, "high": 1.0, "default": 0.995},
    "llm_importance": {"type": "bool", "default": False},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

EMBED_BATCH = 256
_WORD = re.compile(r"\w\w+")
_NUMBER = re.compile(r"\b\d[\d,.:/-]*\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)
IMPORTANCE_PROMPT = (
    "On a scale of 1 to 10, where 1 is purely mundane (e.g. greetings, small talk) and 10 is extremely "
    "poignant (e.g. a break-up, a new job, a move), rate the likely importance of this memory. "
    "Answer with one number.\nMemory: {text}"
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def hours(iso):
    try:
        return datetime.fromisoformat(iso).timestamp() / 3600.0
    except (TypeError, ValueError):
        return None


# --- encode: event -> a record, importance rated by the LLM when there is one ---------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    rec = {"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
           "speaker": speaker}
    if knobs["llm_importance"] and toolkit.has_llm:
        try:
            reply = toolkit.llm(IMPORTANCE_PROMPT.format(text=text), max_tokens=5)
            found = re.search(r"\d+", reply)
            if found:
                rec["importance"] = min(10, max(1, int(found.group()))) / 10.0
        except (toolkit.LLMUnavailable, getattr(toolkit, "LLMError", toolkit.LLMUnavailable)):
            pass
    return [rec]


# --- index: vectors (cached by text) and the offline importance of new memories -------------------
def index(records, state, toolkit, knobs):
    cache = state.setdefault("ga_vectors", {})
    new = list(dict.fromkeys(r["text"] for r in records if r["text"] not in cache))
    for s in range(0, len(new), EMBED_BATCH):
        chunk = new[s:s + EMBED_BATCH]
        for t, v in zip(chunk, toolkit.embed(chunk), strict=True):
            vec = np.asarray(v, dtype=np.float32)
            norm = float(np.linalg.norm(vec))
            cache[t] = vec / norm if norm > 0 else vec
    seen, imp = state.setdefault("ga_seen", set()), state.setdefault("ga_importance", {})
    for r in sorted(records, key=lambda r: r["seq"]):
        if r["seq"] in imp:
            continue
        words = set(terms(r["text"]))
        novelty = len(words - seen) / len(words) if words else 0.0
        seen.update(words)
        heuristic = (0.4 * novelty + 0.3 * min(len(_NAME.findall(r["text"])), 2) / 2
                     + 0.3 * min(len(_NUMBER.findall(r["text"])), 2) / 2)
        imp[r["seq"]] = r.get("importance", heuristic)
    state["ga_matrix"] = np.stack([cache[r["text"]] for r in records]) if records else None
    # Creation times parsed once per memory; "last" = max(created, last retrieved) as one array, so a
    # read computes recency with numpy instead of a Python loop over the whole stream.
    created = state.setdefault("ga_created", {})
    for r in records:
        if r["seq"] not in created:
            created[r["seq"]] = hours(r.get("time"))
    state["ga_imp"] = np.array([imp.get(r["seq"], 0.0) for r in records], dtype=np.float64)
    access = state.setdefault("ga_access", {})
    state["ga_last"] = np.array([max((h for h in (created.get(r["seq"]), access.get(r["seq"])) if h is not None),
                                     default=np.nan) for r in records], dtype=np.float64)


# --- retrieve: the weighted sum of the three normalised scores ------------------------------------
def normalise(x):
    span = float(x.max() - x.min()) if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def retrieve(query, records, state, toolkit, knobs):
    mat = state.get("ga_matrix")
    if mat is None or not records or not query["question"].strip():
        return []
    q = np.asarray(toolkit.embed([query["question"]])[0], dtype=np.float32)
    qn = float(np.linalg.norm(q))
    relevance = mat @ (q / qn) if qn > 0 else np.zeros(len(records), dtype=np.float32)
    access = state.setdefault("ga_access", {})
    q_hours = hours(query.get("time"))
    last = state["ga_last"]
    if q_hours is not None and not np.isnan(last).any():
        age = np.maximum(0.0, q_hours - last)
    else:  # no usable times: age in write steps
        seqs = np.array([r["seq"] for r in records], dtype=np.float64)
        age = seqs.max() - seqs
    recency = np.power(knobs["decay_per_hour"], age)
    imp = state["ga_imp"]
    score = (knobs["w_recency"] * normalise(recency) + knobs["w_importance"] * normalise(imp)
             + knobs["w_relevance"] * normalise(relevance))
    k = min(knobs["top_k"], len(records))
    top = np.argsort(-score, kind="stable")[:k]
    hits = [(int(i), float(score[i])) for i in top if relevance[i] > 0]
    if q_hours is not None:  # retrieval refreshes recency, as in the paper
        for i, _ in hits:
            access[records[i]["seq"]] = q_hours
            last[i] = max(last[i], q_hours)
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


# --- maintain: housekeeping at phase boundaries (none here: the stream keeps everything) ----------
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
