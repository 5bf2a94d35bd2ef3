"""HippoRAG-style memory: an entity graph over turns, ranked by personalised PageRank from the query.

Idea (Gutiérrez et al. 2024, "HippoRAG: Neurobiologically Inspired Long-Term Memory for Large
Language Models"; the graph layout follows HippoRAG 2, Gutiérrez et al. 2025): every turn is indexed
into entity phrases; one graph holds entity nodes and turn nodes, with an edge from each turn to the
entities it mentions, relation edges between the subject and object of a triple (with an LLM), and
synonymy edges. At query time the entities named in the question seed a personalised PageRank (PPR),
each weighted by its specificity (1 / number of turns it occurs in); the question's BM25 turns (scored as
``bm25s`` does) seed the turn nodes with weight ``lexical_weight`` (HippoRAG 2 seeds passage nodes from a
dense retriever). Turns are ranked by their PPR mass, which reaches evidence several entity hops away
that shares no word with the question. A question with no known entity is seeded by BM25 alone (the
lexical fallback).
Offline entity extraction (the documented heuristic, ``entities``): capitalised spans ("Lisbon
Marathon"), numbers, and quoted phrases; a capitalised span loses leading stop words ("What", "The",
"I", "Yesterday"); possessive 's is stripped; entities are lower-cased. With an LLM
(``toolkit.has_llm`` and ``llm_openie``) each turn's OpenIE-style triples replace the heuristic.
Synonymy: a multi-word entity is linked to each of its words that is itself an entity. The speaker
can be a node (``speaker_entity``; off by default: it would be a hub joining every turn of a person).
Simplifies: no relation labels, no embedding-based synonymy or query-to-node linking (exact match of
normalised entity text), PPR by plain numpy power iteration.
Expectation (synthetic, tests/test_seeds_synthetic.py): beats BM25 on multi-hop probes (the entity graph
walks from the question's person to the related one).
Needs an LLM: no (optional, for OpenIE triples).

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
    "The memory below holds past conversation turns as 'speaker: text', ranked by how closely the people, "
    "places and things they mention connect to those in the question; a turn may be relevant through a "
    "chain of such links. Answer from these turns; if they do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "damping": {"type": "float", "low": 0.1, "high": 0.95, "default": 0.5},
    "iterations": {"type": "int", "low": 5, "high": 100, "default": 30},
    "speaker_entity": {"type": "bool", "default": False},
    "lexical_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "llm_openie": {"type": "bool", "default": False},
    "show_time": {"type": "bool", "default": False},
}

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really "
    "yes no oh hey hi wow thanks thank yeah ok okay sure well yesterday today tomorrow last also after "
    "before now maybe sounds great good nice awesome cool".split()
)
_CAPSPAN = re.compile(r"(?<![\w'])([A-Z][\w'’&-]*(?:[ \t]+[A-Z][\w'’&-]*)*)")
_QUOTED = re.compile(r"[\"“]([^\"”]{3,60})[\"”]")
_NUMBER = re.compile(r"\b\d[\d,.:/-]*\d\b|\b\d\b")
_SENT_START = re.compile(r"(?:^|[.!?]\s+|\n)$")
OPENIE_PROMPT = ('Extract the knowledge triples (subject, relation, object) stated in this turn; use names, '
                 'not pronouns. Reply with JSON only: {"triples": [["subject", "relation", "object"]]}.\n\nTURN: ')


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def norm(phrase):
    return re.sub(r"['’]s$", "", re.sub(r"\s+", " ", phrase.strip().lower()))


def entities(text):
    """The heuristic entity set of ``text`` (lower-cased, possessives stripped)."""
    found = []
    for m in _CAPSPAN.finditer(text):
        words = m.group(1).split()
        if _SENT_START.search(text[: m.start()]) and words[0].lower() in _STOP:
            words = words[1:]  # "What Ana said" -> "Ana"; a lone "The" or "I" -> nothing
        while words and words[0].lower() in _STOP:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    found += _QUOTED.findall(text) + _NUMBER.findall(text)
    return sorted({norm(f) for f in found if norm(f) and norm(f) not in _STOP})


# --- encode: one turn -> one record with its entities (and triples when an LLM is there) -------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    rec = {"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
           "speaker": speaker}
    if knobs["llm_openie"] and toolkit.has_llm:
        try:
            reply = toolkit.llm([{"role": "user", "content": OPENIE_PROMPT + text}], temperature=0)
        except getattr(toolkit, "LLMError", RuntimeError):
            reply = ""  # the model failed: this turn gets the offline entities only
        m = re.search(r"\{.*\}", reply or "", re.S)
        try:
            triples = json.loads(m.group(0)).get("triples") if m else None
        except (ValueError, AttributeError):
            triples = None
        good = [t for t in triples or [] if isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t)]
        if good:
            rec["triples"] = [[norm(t[0]), norm(t[2])] for t in good]
        else:
            toolkit.log(f"hipporag: no usable triples, heuristic entities used: {str(reply)[:200]!r}")
    return [rec]


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


# --- index: one graph of entity nodes and turn nodes (turn-entity, relation and synonymy edges) ------
def record_terms(record):
    return terms(record["text"])


def index(records, state, toolkit, knobs):
    node, turn_nodes, edges = {}, [], set()

    def nid(name):
        return node.setdefault(name, len(node))

    for r in records:
        pairs = r.get("triples")
        body = r["text"][len(r["speaker"]) + 2:] if r.get("speaker") and r["text"].startswith(r["speaker"] + ": ") \
            else r["text"]
        names = sorted({x for p in pairs for x in p if x}) if pairs else entities(body)
        if knobs["speaker_entity"] and r.get("speaker"):
            names = sorted(set(names) | {norm(r["speaker"])})
        turn_nodes.append([nid(n) for n in names])
        edges.update((min(nid(a), nid(b)), max(nid(a), nid(b))) for a, b in pairs or [] if a and b and a != b)
    for name, i in list(node.items()):  # synonymy: "lisbon marathon" ~ "lisbon"
        for w in name.split() if " " in name else []:
            if w in node:
                edges.add((min(i, node[w]), max(i, node[w])))
    n_ent = len(node)
    for t, ids in enumerate(turn_nodes):  # turn nodes come after the entity nodes
        edges.update((i, n_ent + t) for i in ids)
    e = np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)
    state["hr_nodes"], state["hr_turn_nodes"], state["hr_size"] = node, turn_nodes, n_ent + len(records)
    state["hr_src"] = np.concatenate([e[:, 0], e[:, 1]])
    state["hr_dst"] = np.concatenate([e[:, 1], e[:, 0]])
    state["hr_df"] = np.bincount([i for ids in turn_nodes for i in set(ids)], minlength=n_ent).astype(float)
    state["hr_bm25"] = bm25_sync(state.get("hr_bm25"), records, record_terms)


def ppr(seeds, src, dst, n, damping, iterations):
    """Personalised PageRank by power iteration; the mass of dangling nodes returns to the seeds."""
    reset = seeds / seeds.sum()
    out_deg = np.bincount(src, minlength=n).astype(float)
    p = reset.copy()
    for _ in range(iterations):
        share = np.where(out_deg > 0, p / np.maximum(out_deg, 1), 0.0)
        walked = np.bincount(dst, weights=share[src], minlength=n)
        p = (1 - damping) * reset + damping * (walked + p[out_deg == 0].sum() * reset)
    return p


# --- retrieve: PPR seeded by the question's entities (and, weighted, its BM25 turns); rank turn nodes --
def retrieve(query, records, state, toolkit, knobs):
    if not records:
        return []
    node, n_ent, size = state["hr_nodes"], len(state["hr_nodes"]), state["hr_size"]
    ent_seed, lex_seed = np.zeros(size), np.zeros(size)
    for name in entities(query["question"]):
        if name in node:
            ent_seed[node[name]] = 1.0 / max(state["hr_df"][node[name]], 1.0)  # node specificity
    q = terms(query["question"])
    if q and knobs["lexical_weight"] > 0:
        for d, sc in bm25_top(state["hr_bm25"], q, knobs["top_k"]):
            lex_seed[n_ent + d] = sc
    w = knobs["lexical_weight"] if ent_seed.sum() > 0 else 1.0  # no known entity: the lexical fallback alone
    seeds = (1 - w) * ent_seed / max(ent_seed.sum(), 1e-12) + w * lex_seed / max(lex_seed.sum(), 1e-12)
    if seeds.sum() <= 0:
        return []
    p = ppr(seeds, state["hr_src"], state["hr_dst"], size, knobs["damping"], knobs["iterations"])[n_ent:]
    order = np.argsort(-p, kind="stable")[: knobs["top_k"]]
    return [(int(i), float(p[i])) for i in order if p[i] > 0]


def expand(hits, records, state, knobs):
    return hits


# --- pack: hits -> the read result, within the token budget ---------------------------------------
def render(record, knobs):
    if knobs.get("show_time") and record.get("time"):
        return f"[{str(record['time'])[:10]}] {record['text']}"
    return record["text"]


def pack(query, hits, records, toolkit, knobs):
    budget = query.get("budget", 1024)
    used, lines, items = 0, [], []
    for i, _score in hits:
        text = render(records[i], knobs)
        n = toolkit.count_tokens(text)
        if used + n > budget:
            continue
        used += n
        lines.append(text)
        items.append({"text": text, "sources": list(records[i]["sources"])})
    return {"context": "\n".join(lines), "items": items}


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
