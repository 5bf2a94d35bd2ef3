"""Dense retrieval over turns: cosine similarity of embeddings.

Idea: dense passage retrieval (Karpukhin et al., 2020, "Dense Passage Retrieval for Open-Domain
Question Answering"), applied to conversation memory: each turn is stored as "speaker: text", embedded
once with ``toolkit.embed`` and ranked by cosine similarity to the embedded question (numpy, exact
search). The context is filled with turns in rank order until the token budget is reached.
Simplifies: no trained retriever of its own and no approximate index: exact cosine over all turns,
with the vectors cached by text so a read only embeds what was written since the last one.
How semantic it is depends on the host's embedder (``toolkit.embedder_name``): a real sentence model
when one is configured, else a hashing embedder that is a lexical stand-in.
Expectation (synthetic, tests/test_seeds_synthetic.py): with the hashing stand-in a weaker lexical
retriever (no idf): within 0.1 of BM25, still strong on single-hop; with a sentence model it finds
paraphrases BM25 misses.
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation turns, most similar to the question first, each as "
    "'speaker: text'. Answer the question from these turns. Use the names and details exactly as they "
    "appear. If the turns do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "min_score": {"type": "float", "low": -1.0, "high": 0.9, "default": 0.0},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

EMBED_BATCH = 256  # texts per toolkit.embed call: bounded requests over the sandbox channel


# --- encode: event -> records -------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
             "speaker": speaker}]


# --- index: embed what is new, keep one normalised matrix -----------------------------------------
def embed_cached(texts, state, toolkit):
    """Vectors for ``texts``, embedding only the ones not seen before (cache under state['dense_cache'])."""
    cache = state.setdefault("dense_cache", {})
    new = list(dict.fromkeys(t for t in texts if t not in cache))
    for s in range(0, len(new), EMBED_BATCH):
        chunk = new[s:s + EMBED_BATCH]
        for t, v in zip(chunk, toolkit.embed(chunk), strict=True):
            vec = np.asarray(v, dtype=np.float32)
            norm = float(np.linalg.norm(vec))
            cache[t] = vec / norm if norm > 0 else vec
    return [cache[t] for t in texts]


def index(records, state, toolkit, knobs):
    vecs = embed_cached([r["text"] for r in records], state, toolkit)
    state["dense_matrix"] = np.stack(vecs) if vecs else None


# --- retrieve: query -> [(record index, score)], best first ---------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    mat = state.get("dense_matrix")
    if mat is None or not records or not query["question"].strip():
        return []
    q = np.asarray(toolkit.embed([query["question"]])[0], dtype=np.float32)
    norm = float(np.linalg.norm(q))
    if norm == 0:
        return []
    scores = mat @ (q / norm)
    k = min(knobs["top_k"], len(records))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(i), float(scores[i])) for i in top if scores[i] > knobs["min_score"]]


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
