"""Session-summary hierarchy: find the best sessions by their summaries, then the turns inside them.

Idea: hierarchical memory (as in MemoryBank's session summaries, Zhong et al. 2023, and the
session-level indexing studied by LongMemEval, Wu et al. 2024): each session gets a short summary; a
read first ranks sessions by summary (BM25 scored as ``bm25s`` does), then ranks turns with BM25 only inside the
``top_sessions`` best sessions, a turn's score mixing its own match with its session's.
Offline the summary is extractive: the ``summary_turns`` turns with the highest sum of session-tf x
corpus-idf over their content words, plus the session's top keywords. With an LLM (``toolkit.has_llm``
and knob ``llm_summary``) ``manage("session_end")`` asks for an abstractive summary instead.
Simplifies: two levels only (session -> turn), no summary of summaries, summaries are keys (shown
only with ``show_summaries``).
Expectation (synthetic, tests/test_seeds_synthetic.py): at least BM25's recall: the session step keeps a
session's turns together.
Needs an LLM: no (uses it when present).

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import datetime as _dt
import json
import math
import re
from array import array
from base64 import b64decode, b64encode
from bisect import bisect_left
from collections import Counter

import numpy as np

INSTRUCTIONS = (
    "The memory below holds turns from the past conversation sessions that best match the question, "
    "each as 'speaker: text', sometimes after a one-line summary of its session. Answer from these turns; "
    "use names and details exactly as they appear. If they do not contain the answer, say so."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "top_sessions": {"type": "int", "low": 1, "high": 20, "default": 6},
    "summary_turns": {"type": "int", "low": 1, "high": 12, "default": 4},
    "session_keywords": {"type": "int", "low": 0, "high": 80, "default": 30},
    "session_weight": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.5},
    "show_summaries": {"type": "int", "low": 0, "high": 3, "default": 0},
    "llm_summary": {"type": "bool", "default": False},
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
SUMMARY_PROMPT = (
    "Summarise this conversation session in at most 3 sentences. Keep every name, date, number, place "
    "and plan mentioned.\n\n{turns}"
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


# --- encode: event -> records -------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
             "speaker": speaker}]


# --- bm25: an incremental Okapi BM25 index, shared section (identical in every seed that has it) ---
# Scores and ranks exactly as a bm25s index ("lucene" idf) built from scratch would, equal scores
# included: float32 per-term contributions of a float64 length normalisation, summed in query order.
# A write adds (or replaces) one document's postings; N, the average length and idf enter at query
# time, so an agent's turn costs the query terms' postings, not a rebuild of the whole memory.
def bm25_new():
    return {"n": 0, "post": {}, "lens": array("i"), "total": 0}


def bm25_put(idx, doc, toks, old=None):
    """Index document ``doc`` (``idx["n"]``: a new one; lower: replace it, ``old`` being its tokens)."""
    toks, post = toks or [""], idx["post"]
    if doc < idx["n"]:
        for t in set(old or [""]):
            p = post[t]
            i = bisect_left(p[0], doc)
            del p[0][i], p[1][i]
            if not p[0]:
                del post[t]
        idx["total"] -= idx["lens"][doc]
        idx["lens"][doc] = len(toks)
    else:
        idx["lens"].append(len(toks))
        idx["n"] += 1
    idx["total"] += len(toks)
    for t, tf in Counter(toks).items():
        p = post.get(t)
        if p is None:
            p = post[t] = (array("i"), array("f"))
        if p[0] and p[0][-1] > doc:  # a replaced document: keep each posting list in document order
            i = bisect_left(p[0], doc)
            p[0].insert(i, doc)
            p[1].insert(i, tf)
        else:
            p[0].append(doc)
            p[1].append(tf)


def bm25_sync(idx, records, doc_terms):
    """The index ``idx`` (None: none yet) of one document per record (``doc_terms(record)``), brought
    up to date with ``records``: appended records are added; a different or shortened list, or a new
    last record, starts over (so a maintain() that rewrites records must hand back a new list).
    Callers store the result themselves (``state["k"] = bm25_sync(state.get("k"), ...)``), so a
    structural move sees which component writes the key."""
    n = idx["n"] if idx is not None else 0
    if idx is None or idx.get("records") is not records or n > len(records) or (n and records[n - 1] is not idx["last"]):
        idx = {**bm25_new(), "records": records, "last": None}
    for d in range(idx["n"], len(records)):
        bm25_put(idx, d, doc_terms(records[d]))
    idx["last"] = records[-1] if records else None
    return idx


def bm25_top(idx, q, k, k1=1.5, b=0.75, ties="bm25s"):
    """[(document, score)] of the ``k`` best documents for query tokens ``q``, positive scores only,
    in bm25s's order; ``ties="write_order"`` ranks equal scores oldest first instead."""
    n = idx["n"]
    k = min(k, n)
    if k <= 0 or not q:
        return []
    l_avg = np.float64(idx["total"]) / n
    lens = np.array(idx["lens"], dtype=np.int32)
    scores = np.zeros(n, dtype=np.float32)
    for t in q:
        p = idx["post"].get(t)
        if p is None:
            continue
        docs = np.array(p[0], dtype=np.int32)
        tf = np.array(p[1], dtype=np.float32)
        idf = np.float32(math.log(1 + (n - len(p[0]) + 0.5) / (len(p[0]) + 0.5)))
        tfc = tf / (k1 * ((1 - b) + b * lens[docs] / l_avg) + tf)
        scores[docs] += (idf * tfc).astype(np.float32)
    # Fast path: rank only the matched records (the rest score 0 and are dropped). When the top
    # scores are all distinct their order is fixed, so this equals bm25s's selection below exactly.
    cand = np.flatnonzero(scores)
    top = cand
    if len(cand) > k:
        top = cand[scores[cand] >= np.partition(scores[cand], -k)[-k]]
    top_scores = scores[top]
    if ties == "write_order" or (len(top) <= k and len(np.unique(top_scores)) == len(top)):
        order = np.lexsort((top, -top_scores))[:k]
        return list(zip(top[order].tolist(), top_scores[order].tolist(), strict=True))
    # Equal scores: bm25s's tie order is that of its argpartition over every record, so do the same.
    part = np.argpartition(scores, -k)[-k:]
    part_scores = scores[part]
    order = np.flip(np.argsort(part_scores))
    order = order[part_scores[order] > 0]
    return list(zip(part[order].tolist(), part_scores[order].tolist(), strict=True))
# --- end of the bm25 section ---


# --- index: session summaries (extractive or from the LLM) and two BM25 indexes -------------------
def extractive_summary(members, records, idf, knobs):
    """The session's most salient turns (in order) and its top keywords."""
    # dict.fromkeys, not set: a set's order changes with the interpreter's hash seed, and with it the
    # float sums and the order of equal keywords (one run would not repeat another).
    tf = Counter(w for i in members for w in dict.fromkeys(terms(records[i]["text"])))
    def salience(i):
        return sum(tf[w] * idf.get(w, 0.0) for w in dict.fromkeys(terms(records[i]["text"])))
    chosen = sorted(sorted(members, key=salience, reverse=True)[:knobs["summary_turns"]])
    keywords = [w for w, _ in sorted(tf.items(), key=lambda kv: -kv[1] * idf.get(kv[0], 0.0))]
    return chosen, keywords[:knobs["session_keywords"]]


def record_terms(record):
    return terms(record["text"])


def index(records, state, toolkit, knobs):
    sessions = {}
    for i, r in enumerate(records):
        sessions.setdefault(str(r.get("session")), []).append(i)
    df = Counter(w for r in records for w in set(terms(r["text"])))
    idf = {w: math.log(1 + len(records) / c) for w, c in df.items()}
    llm_summaries = state.get("sh_llm_summaries", {})
    keys, info = [], []
    for sid, members in sessions.items():
        chosen, keywords = extractive_summary(members, records, idf, knobs)
        summary = llm_summaries.get(sid) or " ".join(records[i]["text"] for i in chosen)
        keys.append((terms(summary) + keywords) or [""])
        info.append({"session": sid, "members": members, "summary": summary, "chosen": chosen,
                     "abstractive": sid in llm_summaries})
    # Summaries follow the corpus-wide idf, so session keys change with every write: that small index
    # (one document per session) is built afresh; the turn index only grows.
    sess_index = bm25_new()
    for d, key in enumerate(keys):
        bm25_put(sess_index, d, key)
    state["sh_turn_index"] = bm25_sync(state.get("sh_turn_index"), records, record_terms)
    state["sh_sessions"], state["sh_session_index"] = info, sess_index


# --- retrieve: best sessions first, then the turns inside them -------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    info = state.get("sh_sessions") or []
    if not records or not q or not info:
        return []
    ns = min(knobs["top_sessions"], len(info))
    best = dict(bm25_top(state["sh_session_index"], q, ns, knobs["k1"], knobs["b"]))
    if not best:
        return []
    smax = max(best.values())
    state["sh_last_sessions"] = [info[d] for d in sorted(best, key=best.get, reverse=True)]
    weight = {i: best[d] / smax for d in best for i in info[d]["members"]}
    scored = [(i, s) for i, s in bm25_top(state["sh_turn_index"], q, len(records), knobs["k1"], knobs["b"]) if i in weight]
    if not scored:
        return []
    tmax = max(s for _, s in scored)
    ranked = sorted(((i, s / tmax + knobs["session_weight"] * weight[i]) for i, s in scored), key=lambda x: -x[1])
    return ranked[:knobs["top_k"]]


# --- expand: add or reorder hits (none here) ------------------------------------------------------
def expand(hits, records, state, knobs):
    return hits


# --- pack: optional session summaries, then turns, within the token budget ------------------------
def render(record, knobs):
    if knobs.get("show_time") and record.get("time"):
        return f"[{record['time']}] {record['text']}"
    return record["text"]


def pack(query, hits, records, toolkit, knobs):
    budget = query.get("budget", 1024)
    used, lines, items = 0, [], []
    candidates = []
    for s in (knobs.get("sh_shown") or [])[:knobs.get("show_summaries", 0)]:
        sources = [records[i]["sources"][0] for i in (s["members"] if s["abstractive"] else s["chosen"])]
        candidates.append((f"[session {s['session']} summary] {s['summary']}", sources))
    candidates += [(render(records[i], knobs), list(records[i]["sources"])) for i, _ in hits]
    for text, sources in candidates:
        n = toolkit.count_tokens(text)
        if used + n > budget:
            if knobs.get("fill") == "stop":
                break
            continue
        used += n
        lines.append(text)
        items.append({"text": text, "sources": sources})
    return {"context": "\n".join(lines), "items": items}


# --- maintain: with an LLM, an abstractive summary of the session that just ended ----------------
def maintain(phase, records, state, toolkit, knobs):
    if phase != "session_end" or not records or not knobs["llm_summary"] or not toolkit.has_llm:
        return records
    sid = str(records[-1].get("session"))
    done = state.setdefault("sh_llm_summaries", {})
    if sid in done:
        return records
    turns = "\n".join(r["text"] for r in records if str(r.get("session")) == sid)
    try:
        done[sid] = toolkit.llm(SUMMARY_PROMPT.format(turns=turns[:12000]), max_tokens=200).strip()
    except (toolkit.LLMUnavailable, getattr(toolkit, "LLMError", toolkit.LLMUnavailable)):
        pass
    return records


# --- snapshot: the driver's state as JSON data, shared section (identical in every seed that has it) ---
# For persistent hosts (the exported module): a cold start loads this instead of replaying and
# re-indexing every event. Any state the components keep is covered: arrays and numpy arrays as
# base64 of their bytes (parsing millions of JSON numbers is the slow part), tuples, dates, dicts with
# non-string keys, and references to the record list or to one record, which come back as the same
# objects (an incremental index checks them by identity). Anything else raises TypeError: the host
# then keeps replaying, which is always correct.
def snap_encode(x, records, where):
    if x is records:
        return {"_mx": "records"}
    if isinstance(x, dict) and id(x) in where and records[where[id(x)]] is x:
        return {"_mx": "record", "i": where[id(x)]}
    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, list):
        return [snap_encode(v, records, where) for v in x]
    if isinstance(x, tuple):
        return {"_mx": "tuple", "v": [snap_encode(v, records, where) for v in x]}
    if isinstance(x, dict):
        if all(isinstance(k, str) and k != "_mx" for k in x):
            return {k: snap_encode(v, records, where) for k, v in x.items()}
        return {"_mx": "dict", "k": [snap_encode(k, records, where) for k in x],
                "v": [snap_encode(v, records, where) for v in x.values()]}
    if isinstance(x, array):
        return {"_mx": "array", "t": x.typecode, "b": b64encode(x.tobytes()).decode(), "le": _LITTLE}
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return {"_mx": "nd", "t": x.dtype.str, "s": list(x.shape), "b": b64encode(np.ascontiguousarray(x).tobytes()).decode()}
    if isinstance(x, _dt.datetime):
        return {"_mx": "datetime", "v": x.isoformat()}
    raise TypeError(f"state holds a {type(x).__name__}, not snapshot data")


def snap_decode(x, records):
    if isinstance(x, list):
        return [snap_decode(v, records) for v in x]
    if not isinstance(x, dict):
        return x
    tag = x.get("_mx")
    if tag is None:
        return {k: snap_decode(v, records) for k, v in x.items()}
    if tag == "records":
        return records
    if tag == "record":
        return records[x["i"]]
    if tag == "tuple":
        return tuple(snap_decode(v, records) for v in x["v"])
    if tag == "dict":
        return {snap_decode(k, records): snap_decode(v, records) for k, v in zip(x["k"], x["v"], strict=True)}
    if tag == "array":
        arr = array(x["t"])
        arr.frombytes(b64decode(x["b"]))
        if x["le"] != _LITTLE:
            arr.byteswap()
        return arr
    if tag == "nd":
        return np.frombuffer(b64decode(x["b"]), dtype=np.dtype(x["t"])).reshape(x["s"]).copy()
    if tag == "datetime":
        return _dt.datetime.fromisoformat(x["v"])
    raise ValueError(f"unknown snapshot tag {tag!r}")


def snap_records(records, where):
    # Records that JSON carries unchanged (the usual case, checked at C speed) go as they are, so a
    # cold start parses them without a Python pass over each one.
    try:
        if json.loads(json.dumps(records)) == records:
            return {"plain": records}
    except (TypeError, ValueError):
        pass
    return {"coded": [snap_encode(dict(r), records, where) for r in records]}


def unsnap_records(saved):
    return saved["plain"] if "plain" in saved else [snap_decode(r, []) for r in saved["coded"]]


_LITTLE = array("i", [1]).tobytes()[0] == 1
# --- end of the snapshot section ---


class Memory:
    """The standard driver of a modular harness, plus: the sessions a read picked are passed to pack."""

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
        self.state["sh_last_sessions"] = []
        hits = retrieve(query, self.records, self.state, self.toolkit, self.knobs)
        hits = expand(hits, self.records, self.state, self.knobs)
        knobs = dict(self.knobs, sh_shown=self.state["sh_last_sessions"])
        return pack(query, hits, self.records, self.toolkit, knobs)

    def manage(self, phase):
        # A new list: maintain() may rewrite records in place, and the index rebuilds on a new list.
        self.records = list(maintain(phase, self.records, self.state, self.toolkit, self.knobs))
        self.dirty = True

    def dump(self):
        return [{"text": r["text"], "sources": r["sources"]} for r in self.records]

    # A snapshot for persistent hosts (see the snapshot section). (Named save_state: ``self.state`` is
    # the components' shared dict.)
    def save_state(self):
        where = {id(r): i for i, r in enumerate(self.records)}
        return {"records": snap_records(self.records, where), "state": snap_encode(self.state, self.records, where),
                "dirty": self.dirty}

    def load_state(self, saved):
        self.records = unsnap_records(saved["records"])
        self.state = snap_decode(saved["state"], self.records)
        self.dirty = saved["dirty"]
