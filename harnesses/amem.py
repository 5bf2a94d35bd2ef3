"""A-MEM-style linked notes: keywords, tags and links between related notes, followed at read time.

Idea: A-MEM (Xu et al., 2025, "A-MEM: Agentic Memory for LLM Agents", after the Zettelkasten method):
each turn becomes a note with keywords, tags and a short context; a new note is linked to the existing
notes it is most related to (both directions); a read retrieves notes (BM25 scored as ``bm25s`` does, incremental, over text +
keywords + tags + context) and then follows the links of its ``follow_top`` best hits: a linked note
enters the ranking with its hit's score x ``link_decay``, so a related note comes back even when it
shares no word with the question, without pushing strong direct hits out of the budget.
Offline the note is built by a documented heuristic: keywords = the note's content words (speaker name
left out), tags = capitalised names and "number"; a link joins notes whose shared keywords weigh at
least ``link_min`` in idf. With an LLM (``toolkit.has_llm``, knob ``llm_notes``) keywords, tags and
context come from the model.
Simplifies: no "memory evolution" (the LLM rewriting older notes' context and tags); links are
chosen by keyword overlap, not by embeddings plus an LLM decision.
Expectation (synthetic, tests/test_seeds_synthetic.py): beats BM25 on multi-hop probes: the link from the
first hop's note reaches the second hop, which shares no word with the question.
Needs an LLM: no (uses it for note construction when present).

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
    "The memory below holds notes of past conversation turns, each as 'speaker: text': first the notes "
    "that match the question, each followed by notes linked to it (same people, things or events). "
    "Answer from these notes using names and details exactly as they appear; if the answer is not there, say so."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "max_links": {"type": "int", "low": 0, "high": 10, "default": 3},
    "link_min": {"type": "float", "low": 0.0, "high": 20.0, "default": 6.0},
    "follow_top": {"type": "int", "low": 0, "high": 50, "default": 10},
    "link_decay": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.3},
    "llm_notes": {"type": "bool", "default": False},
    "show_time": {"type": "bool", "default": False},
    "fill": {"type": "cat", "choices": ["skip", "stop"], "default": "skip"},
}

_WORD = re.compile(r"\w\w+")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)
NOTE_PROMPT = (
    "Make a memory note of this conversation turn. Reply with JSON only: {{\"keywords\": [up to 6 key "
    "words], \"tags\": [up to 4 broad categories], \"context\": \"one sentence on what it is about\"}}.\n"
    "Turn: {text}"
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def llm_note(text, toolkit):
    try:
        reply = toolkit.llm(NOTE_PROMPT.format(text=text), max_tokens=150)
        found = re.search(r"\{.*\}", reply, re.S)
        note = json.loads(found.group()) if found else {}
    except (toolkit.LLMUnavailable, getattr(toolkit, "LLMError", ValueError), ValueError):
        return None
    if not isinstance(note, dict):
        return None
    kws = [str(k).lower() for k in note.get("keywords", []) if isinstance(k, str)]
    tags = [str(t).lower() for t in note.get("tags", []) if isinstance(t, str)]
    return {"keywords": kws, "tags": tags, "note_context": str(note.get("context", ""))[:300]}


# --- encode: event -> one note --------------------------------------------------------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    note = llm_note(text, toolkit) if knobs["llm_notes"] and toolkit.has_llm else None
    if note is None:
        tags = sorted({n.lower() for n in _NAME.findall(event["text"])} | ({"number"} if re.search(r"\d", event["text"]) else set()))
        note = {"keywords": list(dict.fromkeys(terms(event["text"]))), "tags": tags, "note_context": ""}
    return [{"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
             "speaker": speaker, **note}]


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


# --- index: link new notes to related older ones (incremental), then BM25 over the notes ---------
def note_keywords(record):
    # Unique, in text order: a set's order follows the hash seed, and with it the float sums of the link
    # weights and the order of equal links (one run would not repeat another).
    return list(dict.fromkeys(record.get("keywords") or terms(record["text"])))


def note_terms(record):
    return terms(" ".join([record["text"], " ".join(record.get("keywords") or []), " ".join(record.get("tags") or []),
                           record.get("note_context") or ""]))


def index(records, state, toolkit, knobs):
    links, inverted, df = state.setdefault("amem_links", {}), state.setdefault("amem_inv", {}), state.setdefault("amem_df", {})
    # Notes appended since the last index are the only unlinked ones on the same list: link just those.
    idx = state.get("bm25")
    same = idx is not None and idx.get("records") is records and idx["n"] <= len(records) \
        and (not idx["n"] or records[idx["n"] - 1] is idx["last"])
    for r in sorted(records[idx["n"]:] if same else records, key=lambda r: r["seq"]):
        if r["seq"] in links:
            continue
        kws = note_keywords(r)
        for w in kws:
            df[w] = df.get(w, 0) + 1
        n = len(links) + 1
        weight = {}
        for w in kws:
            idf = math.log(1 + n / df[w])
            for other in inverted.get(w, ()):
                weight[other] = weight.get(other, 0.0) + idf
        best = sorted((s for s in weight.items() if s[1] >= knobs["link_min"]), key=lambda s: -s[1])[:knobs["max_links"]]
        links[r["seq"]] = [o for o, _ in best]
        for o, _ in best:  # links go both ways: the older note learns of the newer one
            links.setdefault(o, []).append(r["seq"])
        for w in kws:
            inverted.setdefault(w, []).append(r["seq"])
    state["bm25"] = bm25_sync(state.get("bm25"), records, note_terms)


# --- retrieve: query -> [(record index, score)], best first ---------------------------------------
def retrieve(query, records, state, toolkit, knobs):
    q = terms(query["question"])
    if not records or not q:
        return []
    k = min(knobs["top_k"], len(records))
    return bm25_top(state["bm25"], q, k, knobs["k1"], knobs["b"])


# --- expand: the best hits bring their linked notes, each ranked by its hit's score x link_decay ----
def expand(hits, records, state, knobs):
    links = state.get("amem_links", {})
    # seq -> position, extended as records are appended (rebuilt only for a different list).
    cache = state.get("seq_pos")
    if cache is None or cache[0] is not records or cache[1] > len(records):
        cache = state["seq_pos"] = [records, 0, {}]
    by_seq = cache[2]
    for i in range(cache[1], len(records)):
        by_seq[records[i]["seq"]] = i
    cache[1] = len(records)
    best = {}
    for rank, (i, score) in enumerate(hits):
        best[i] = max(best.get(i, score), score)
        if rank < knobs["follow_top"]:
            for s in links.get(records[i]["seq"], []):
                if s in by_seq:
                    j = by_seq[s]
                    best[j] = max(best.get(j, 0.0), score * knobs["link_decay"])
    # Sorting by score lets a linked note outrank weak direct hits without pushing strong ones out of
    # the budget (a link inherits a decayed share of its hit's relevance).
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


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
        return [{"text": r["text"], "sources": r["sources"], "keywords": r.get("keywords", []),
                 "tags": r.get("tags", [])} for r in self.records]

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
