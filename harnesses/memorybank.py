"""MemoryBank-style memory: Ebbinghaus forgetting with reinforcement on recall.

Idea: MemoryBank (Zhong et al., 2023, "MemoryBank: Enhancing Large Language Models with Long-Term
Memory") gives every memory a strength S and a retention R = exp(-t / S) after the Ebbinghaus
forgetting curve, t being the time since the memory was last recalled. Recalling a memory reinforces
it (S grows by ``strength_gain``, t resets to 0); at ``manage`` time memories whose retention fell
below ``forget_below`` are forgotten. Retrieval is BM25 relevance (scored as ``bm25s`` does, from an incremental index), scaled mildly by retention.
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

import datetime as _dt
import json
import math
import re
from array import array
from base64 import b64decode, b64encode
from bisect import bisect_left
from collections import Counter
from datetime import datetime

import numpy as np

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


# --- index: BM25 over the remembered turns --------------------------------------------------------
def record_terms(record):
    return terms(record["text"])


def index(records, state, toolkit, knobs):
    state["bm25"] = bm25_sync(state.get("bm25"), records, record_terms)


# --- retrieve: relevance x retention; the best hits are recalled (reinforced at the next manage) ---
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    if not records or not q:
        return []
    k = min(knobs["top_k"], len(records))
    t_now = now(records, state, knobs)
    w = knobs["retention_weight"]
    hits = [(d, s * (1.0 - w + w * retention(records[d], state, knobs, t_now)))
            for d, s in bm25_top(state["bm25"], q, k, knobs["k1"], knobs["b"])]
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
