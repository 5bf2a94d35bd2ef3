"""Hybrid retrieval: BM25 and dense rankings fused with reciprocal-rank fusion.

Idea: lexical and dense retrievers fail on different questions (exact names, numbers and rare words
vs. paraphrase), so their rankings are fused with reciprocal-rank fusion (Cormack, Clarke & Buettcher,
2009, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods"):
score(d) = w_lex / (rrf_k + rank_lex(d)) + w_dense / (rrf_k + rank_dense(d)). BM25 is Okapi BM25 via
``bm25s``; dense is cosine over ``toolkit.embed`` vectors (cached by text). Turns are "speaker: text".
Simplifies: each retriever contributes its top ``top_k``; ranks, not scores, are fused, with no
learned weighting. With the hashing embedder both sides are lexical, so the fusion adds little; the
gain comes with a real sentence model (``toolkit.embedder_name``). Defaults tuned on LoCoMo train:
rrf_k 10 (top ranks count more) and w_dense 0.5 (hashing: recall 0.651 at 1.0 / rrf_k 60, 0.682 here).
Expectation (synthetic, tests/test_seeds_synthetic.py): with the hashing stand-in both parts are lexical
and correlated, so fusing them adds nothing: within 0.05 of its weaker part (measured 0.49 vs dense 0.52,
BM25 0.54); the gain needs a sentence model (docs/SEEDS.md, MiniLM rows).
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import re

import bm25s
import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation turns, most relevant first (by matching words and by "
    "meaning), each as 'speaker: text'. Answer the question from these turns. Use the names and details "
    "exactly as they appear. If the turns do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "rrf_k": {"type": "int", "low": 1, "high": 200, "default": 10},
    "w_lex": {"type": "float", "low": 0.0, "high": 2.0, "default": 1.0},
    "w_dense": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.5},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

EMBED_BATCH = 256
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
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
             "speaker": speaker}]


# --- index: a BM25 index and a normalised embedding matrix ----------------------------------------
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
    retriever = bm25s.BM25(k1=knobs["k1"], b=knobs["b"])
    retriever.index([terms(r["text"]) or [""] for r in records], show_progress=False)
    state["bm25"] = retriever
    vecs = embed_cached([r["text"] for r in records], state, toolkit)
    state["dense_matrix"] = np.stack(vecs) if vecs else None


# --- retrieve: fuse the two rankings by reciprocal rank -------------------------------------------
def lexical_ranking(query, records, state, k):
    q = terms(query["question"])
    if not q or state.get("bm25") is None:
        return []
    docs, scores = state["bm25"].retrieve([q], k=k, show_progress=False)
    return [int(d) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


def dense_ranking(query, state, toolkit, k):
    mat = state.get("dense_matrix")
    if mat is None or not query["question"].strip():
        return []
    q = np.asarray(toolkit.embed([query["question"]])[0], dtype=np.float32)
    norm = float(np.linalg.norm(q))
    if norm == 0:
        return []
    scores = mat @ (q / norm)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [int(i) for i in top if scores[i] > 0]


def retrieve(query, records, state, toolkit, knobs):
    if not records:
        return []
    k = min(knobs["top_k"], len(records))
    fused = {}
    for weight, ranking in ((knobs["w_lex"], lexical_ranking(query, records, state, k)),
                            (knobs["w_dense"], dense_ranking(query, state, toolkit, k) if knobs["w_dense"] > 0 else [])):
        if weight <= 0:
            continue
        for rank, i in enumerate(ranking, start=1):
            fused[i] = fused.get(i, 0.0) + weight / (knobs["rrf_k"] + rank)
    best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
    return best[:k]


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
