"""BM25 over turns, each hit brought with its neighbouring turns.

Idea: conversational evidence is often split across adjacent turns (a question and its answer, a
statement and its follow-up). Each BM25 hit (Okapi BM25, scored as ``bm25s`` does, from an incremental
index) pulls in the ``window`` turns before and after it from the same session, ranked just behind the
hit, the way small-to-big / sentence-window retrieval widens a matched chunk. The context is filled in that order within the budget.
Simplifies: neighbours inherit a decayed score of their hit instead of being re-scored.
Expectation (synthetic, tests/test_seeds_synthetic.py): at least BM25's recall (a hit's neighbours ride
along).
Needs an LLM: no.

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import math
import re
from array import array
from base64 import b64decode, b64encode
from collections import Counter

import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation turns, most relevant first, each followed by the turns around it, as 'speaker: text'. "
    "Answer the question from these turns. Use the names and details exactly as they appear. "
    "If the turns do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
    # Equal scores: "bm25s" ranks them exactly as bm25s does (an O(N) selection over all records when
    # the top scores tie); "write_order" ranks them oldest first over the matched records only.
    "ties": {"type": "cat", "choices": ["bm25s", "write_order"], "default": "bm25s"},
    "window": {"type": "int", "low": 0, "high": 5, "default": 1},
    "neighbor_decay": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
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
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time")}]


# --- index: an incremental inverted index over all records ----------------------------------------
# A write only appends postings; N, the average length and idf enter at query time. An agent that
# writes a turn and then reads no longer rebuilds the whole index per turn. The scores are those of
# bm25s's Okapi BM25 ("lucene" idf) to the bit: float32 per-term contributions of a float64 length
# normalisation, summed in query order, and the same ranking, equal scores included.
def index(records, state, toolkit, knobs):
    idx = state.get("bm25")
    n = idx["n"] if idx is not None else 0
    if idx is None or idx["records"] is not records or n > len(records) or (n and records[n - 1] is not idx["last"]):
        # A different or rewritten record list (manage() hands over a new list): start over.
        idx = state["bm25"] = {"records": records, "n": 0, "last": None, "post": {}, "lens": array("i"), "total": 0}
    post, lens = idx["post"], idx["lens"]
    for d in range(idx["n"], len(records)):
        toks = terms(records[d]["text"]) or [""]
        lens.append(len(toks))
        idx["total"] += len(toks)
        for t, tf in Counter(toks).items():
            p = post.get(t)
            if p is None:
                p = post[t] = (array("i"), array("f"))
            p[0].append(d)
            p[1].append(tf)
    idx["n"] = len(records)
    idx["last"] = records[-1] if records else None


# --- retrieve: query -> [(record index, score)], best first ---------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    if not records or not q:
        return []
    idx = state["bm25"]
    n, k1, b = idx["n"], knobs["k1"], knobs["b"]
    l_avg = np.float64(idx["total"]) / n
    lens = np.array(idx["lens"], dtype=np.int32)
    scores = np.zeros(n, dtype=np.float32)
    for t in q:
        p = idx["post"].get(t)
        if p is None:
            continue
        docs = np.array(p[0], dtype=np.int32)
        tf = np.array(p[1], dtype=np.float32)
        df = len(p[0])
        idf = np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5)))
        tfc = tf / (k1 * ((1 - b) + b * lens[docs] / l_avg) + tf)
        scores[docs] += (idf * tfc).astype(np.float32)
    k = min(knobs["top_k"], n)
    # Fast path: rank only the matched records (the rest score 0 and are filtered out). When the top
    # scores are all distinct, their order is fixed, so this equals bm25s's selection below exactly.
    cand = np.flatnonzero(scores)
    top = cand
    if len(cand) > k:
        top = cand[scores[cand] >= np.partition(scores[cand], -k)[-k]]
    top_scores = scores[top]
    if knobs.get("ties") == "write_order" or (len(top) <= k and len(np.unique(top_scores)) == len(top)):
        order = np.lexsort((top, -top_scores))[:k]
        return [(int(d), float(s)) for d, s in zip(top[order], top_scores[order], strict=True)]
    # Equal scores: bm25s's own tie order is that of its argpartition over every record, so do the same.
    part = np.argpartition(scores, -k).take(indices=range(-k, 0))
    part_scores = np.take(scores, part)
    order = np.flip(np.argsort(part_scores))
    return [(int(d), float(s)) for d, s in zip(part[order], part_scores[order], strict=True) if s > 0]


# --- expand: each hit brings the turns around it (same session, by write order) -------------------
def expand(hits, records, state, knobs):
    window = knobs["window"]
    if window <= 0:
        return hits
    # seq -> position, extended as records are appended (rebuilt only for a different list).
    cache = state.get("seq_pos")
    if cache is None or cache[0] is not records or cache[1] > len(records):
        cache = state["seq_pos"] = [records, 0, {}]
    by_seq = cache[2]
    for i in range(cache[1], len(records)):
        by_seq[records[i]["seq"]] = i
    cache[1] = len(records)
    out, seen = [], set()
    for i, score in hits:
        group = [i]
        for d in range(1, window + 1):
            for j in (by_seq.get(records[i]["seq"] - d), by_seq.get(records[i]["seq"] + d)):
                if j is not None and records[j].get("session") == records[i].get("session"):
                    group.append(j)
        for rank, j in enumerate(group):
            if j not in seen:
                seen.add(j)
                out.append((j, score * (1.0 if rank == 0 else knobs["neighbor_decay"])))
    return out


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


# Snapshot arrays travel as base64 of their little-endian bytes (JSON-safe, and fast to parse).
_BIG_ENDIAN = array("i", [1]).tobytes()[0] != 1


def _pack(arr):
    if _BIG_ENDIAN:
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return b64encode(arr.tobytes()).decode()


def _unpack(code, text):
    arr = array(code)
    arr.frombytes(b64decode(text))
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr


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
        # A new list: maintain() may rewrite records in place, and the index rebuilds on a new list.
        self.records = list(maintain(phase, self.records, self.state, self.toolkit, self.knobs))
        self.dirty = True

    def dump(self):
        return [{"text": r["text"], "sources": r["sources"]} for r in self.records]

    # A snapshot for persistent hosts (the exported module): records and postings as plain JSON data,
    # so a cold start loads them instead of replaying and re-tokenising every event. (Named save_state:
    # ``self.state`` is the components' shared dict.)
    def save_state(self):
        idx = self.state.get("bm25")
        if self.dirty or idx is None:
            index(self.records, self.state, self.toolkit, self.knobs)
            self.dirty = False
            idx = self.state["bm25"]
        # Postings as base64 of their machine arrays: parsing millions of JSON numbers is the slow part.
        post = {t: [_pack(p[0]), _pack(p[1])] for t, p in idx["post"].items()}
        return {"records": self.records, "post": post, "lens": _pack(idx["lens"]), "total": idx["total"]}

    def load_state(self, saved):
        self.records = saved["records"]
        post = {t: (_unpack("i", d), _unpack("f", f)) for t, (d, f) in saved["post"].items()}
        self.state = {"bm25": {"records": self.records, "n": len(self.records), "post": post,
                               "last": self.records[-1] if self.records else None,
                               "lens": _unpack("i", saved["lens"]), "total": saved["total"]}}
        self.dirty = False
