"""BM25 candidates reranked by their best sentence and the local embedder, packed with diversity (MMR).

Idea: three classic fixes for a lexical retriever's failures, each a component with its own knob.
(1) Passage-level evidence (Callan 1994, "Passage-level evidence in document retrieval"): a long turn
whose one relevant sentence is diluted by BM25's length normalisation is scored by its best sentence
too (``w_sent``); the whole turn is still what is shown (only whole turns are credited).
(2) Retrieve-then-rerank (Nogueira & Cho 2019, "Passage Re-ranking with BERT", here with a bi-encoder):
the ``cand_n`` best lexical candidates are reranked by mixing their lexical score with the cosine of
``toolkit.embed`` vectors (``w_embed``), which finds paraphrases BM25 misses when the host's embedder
is a sentence model. (3) Maximal marginal relevance (Carbonell & Goldstein 1998, "The use of MMR,
diversity-based reranking for reordering documents"): the context is filled greedily by
``mmr_lambda`` x relevance - (1 - ``mmr_lambda``) x redundancy with what is already packed (content-
word overlap, or embedding cosine), so near-duplicate turns do not crowd out the other evidence of a
multi-hop question. Each hit also brings its neighbouring turns, as in ``bm25_neighbors`` (optionally
only the short ones, ``neighbor_max_words``); a turn is indexed with the words of the short turn
before it (``prev_key_words``), so an answer is found by the question it answers; and terms are
lightly stemmed (``stem``) so "volunteering" meets "volunteer". The embedder rerank is skipped when the host's embedder is the
hashing stand-in (``toolkit.embedder_name``): its vectors only count BM25's words again
(``rerank_hashing`` turns it on anyway).
Simplifies: no cross-encoder (the embedder is the host's bi-encoder: MiniLM when installed, else the
hashing stand-in, which is lexical); sentences are split on end punctuation; the stemmer is a few
suffix rules, not Porter's.
Expectation (synthetic, tests/test_seeds_rerank_pack.py): on hand-built episodes, sentence ranking
finds evidence inside long turns that whole-turn BM25 ranks out of the budget, MMR recalls more of a
multi-hop question's evidence when near-duplicate turns crowd the budget, and the embedder rerank
(with a sentence model) finds paraphrased evidence; on the synthetic suite at least bm25's recall.
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
from functools import lru_cache

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
    "stem": {"type": "bool", "default": True},
    # Passage evidence: the share of a turn's score that comes from its best sentence (0: whole turn only).
    "w_sent": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.3},
    # Rerank: how many lexical candidates are reranked, and the weight of the embedding cosine.
    "cand_n": {"type": "int", "low": 10, "high": 300, "default": 100},
    "w_embed": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.4},
    # The hashing stand-in embedder is lexical: reranking with it only counts the same words again.
    "rerank_hashing": {"type": "bool", "default": False},
    "window": {"type": "int", "low": 0, "high": 5, "default": 1},
    "neighbor_decay": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    # A neighbour longer than this many words is left out (0: no limit): short turns around a hit are
    # cheap context, long ones spend the budget a hit would use.
    "neighbor_max_words": {"type": "int", "low": 0, "high": 400, "default": 0},
    # Diversity: 1.0 packs in rank order; lower trades relevance for novelty against what is packed.
    "mmr_lambda": {"type": "float", "low": 0.0, "high": 1.0, "default": 1.0},
    "redundancy": {"type": "cat", "choices": ["tokens", "embed"], "default": "tokens"},
    "mmr_pool": {"type": "int", "low": 10, "high": 400, "default": 60},
    "show_time": {"type": "bool", "default": False},
    # Index each turn with the words of the turn before it (same session) when that one has at most this
    # many words (0: off): an answer ("a mix of drama and romance") is found by the words of the
    # question it answers ("your screenplay's genre?"); a long one would only dilute the key.
    "prev_key_words": {"type": "int", "low": 0, "high": 400, "default": 100},
}

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)
_SENT = re.compile(r"(?<=[.!?])\s+|\s*\[image:")
_DOUBLE = re.compile(r"([b-df-hj-np-tv-z])\1$")


def stem(w):
    """A few English suffix rules: plurals, -ing/-ed, a final e (dance, dancing, danced -> danc)."""
    if len(w) <= 3 or w.isdigit():
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("s") and not w.endswith("ss") and not w.endswith("us"):
        w = w[:-1]
    for suf in ("ing", "ed"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            if _DOUBLE.search(w):
                w = w[:-1]
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def stem_terms(text, stemmed=True):
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP]
    return [stem(w) for w in words] if stemmed else words


def sentences(text):
    """The sentences of a turn's text (an image caption is a sentence of its own)."""
    return [s for s in _SENT.split(text) if s.strip()] or [text]


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


# --- index: BM25 over whole turns, and over their sentences (both incremental) --------------------
def turn_key(record, records, stemmed, knobs):
    """A turn's index terms: its own, plus those of the turn before it in its session when it is short
    (``prev_key_words``)."""
    toks = stem_terms(record["text"], stemmed)
    k, cap = record.get("seq"), knobs.get("prev_key_words", 0)
    if (cap and isinstance(k, int) and 0 < k < len(records) and records[k] is record
            and records[k - 1].get("session") == record.get("session")
            and len(records[k - 1]["text"].split()) <= cap):
        toks = toks + stem_terms(records[k - 1]["text"], stemmed)
    return toks


def index(records, state, toolkit, knobs):
    stemmed = knobs.get("stem", True)
    state["bm25"] = bm25_sync(state.get("bm25"), records, lambda r: turn_key(r, records, stemmed, knobs))
    # Sentence documents, each owned by a record: appended records add theirs; a new list starts over.
    st = state.get("rp_sent")
    n = st["n"] if st is not None else 0
    if st is None or st["records"] is not records or n > len(records) or (n and records[n - 1] is not st["last"]):
        st = state["rp_sent"] = {"records": records, "n": 0, "last": None, "bm25": bm25_new(), "owner": array("i")}
    for i in range(st["n"], len(records)):
        for s in sentences(records[i]["text"]):
            bm25_put(st["bm25"], st["bm25"]["n"], stem_terms(s, stemmed))
            st["owner"].append(i)
    st["n"], st["last"] = len(records), records[-1] if records else None


# --- retrieve: lexical candidates (turn and best-sentence BM25), reranked with the embedder --------
EMBED_BATCH = 256  # texts per toolkit.embed call: bounded requests over the sandbox channel


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def embed_cached(texts, state, toolkit):
    """Unit vectors for ``texts``, embedding only those not seen before (cache: state['rp_vecs'])."""
    cache = state.setdefault("rp_vecs", {})
    new = list(dict.fromkeys(t for t in texts if t not in cache))
    for s in range(0, len(new), EMBED_BATCH):
        chunk = new[s:s + EMBED_BATCH]
        for t, v in zip(chunk, toolkit.embed(chunk), strict=True):
            cache[t] = unit(v)
    return [cache[t] for t in texts]


def retrieve(query, records, state, toolkit, knobs):
    q = stem_terms(query["question"], knobs.get("stem", True))
    if not records or not q:
        return []
    k1, b, cand_n = knobs["k1"], knobs["b"], knobs["cand_n"]
    turn = dict(bm25_top(state["bm25"], q, cand_n, k1, b))
    w_sent = knobs["w_sent"]
    best = {}
    st = state.get("rp_sent")
    if w_sent > 0 and st is not None:
        for d, s in bm25_top(st["bm25"], q, cand_n * 3, k1, b):
            i = st["owner"][d]
            best[i] = max(best.get(i, 0.0), s)
    top_turn = max(turn.values(), default=0.0) or 1.0
    top_sent = max(best.values(), default=0.0) or 1.0
    lex = {i: (1 - w_sent) * turn.get(i, 0.0) / top_turn + w_sent * best.get(i, 0.0) / top_sent
           for i in set(turn) | set(best)}
    cands = sorted(lex, key=lambda i: (-lex[i], i))[:cand_n]
    w_embed = knobs["w_embed"]
    if getattr(toolkit, "embedder_name", "hashing") == "hashing" and not knobs.get("rerank_hashing"):
        w_embed = 0.0
    if w_embed > 0 and cands:
        qv = embed_cached([query["question"]], state, toolkit)[0]
        vecs = embed_cached([records[i]["text"] for i in cands], state, toolkit)
        cos = [float(v @ qv) for v in vecs]
        lo, hi = min(cos), max(cos)
        span = (hi - lo) or 1.0
        lex = {i: (1 - w_embed) * lex[i] + w_embed * (c - lo) / span for i, c in zip(cands, cos, strict=True)}
        cands = sorted(cands, key=lambda i: (-lex[i], i))
    return [(i, lex[i]) for i in cands[: knobs["top_k"]]]


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
    out, seen, cap = [], set(), knobs.get("neighbor_max_words", 0)
    for i, score in hits:
        group = [i]
        for d in range(1, window + 1):
            for j in (by_seq.get(records[i]["seq"] - d), by_seq.get(records[i]["seq"] + d)):
                if (j is not None and records[j].get("session") == records[i].get("session")
                        and (not cap or len(records[j]["text"].split()) <= cap)):
                    group.append(j)
        for rank, j in enumerate(group):
            if j not in seen:
                seen.add(j)
                out.append((j, score * (1.0 if rank == 0 else knobs["neighbor_decay"])))
    return out


# --- pack: whole turns within the budget, greedily by maximal marginal relevance ------------------
def render(record, knobs):
    if knobs.get("show_time") and record.get("time"):
        return f"[{record['time']}] {record['text']}"
    return record["text"]


def pack(query, hits, records, toolkit, knobs):
    budget = query.get("budget", 1024)
    lam = knobs["mmr_lambda"]
    pool = list(hits)
    if lam < 1.0 and len(pool) > 1:
        pool = mmr_order(pool[: knobs["mmr_pool"]], records, query, toolkit, knobs) + pool[knobs["mmr_pool"]:]
    used, lines, items = 0, [], []
    for i, _score in pool:
        text = render(records[i], knobs)
        n = toolkit.count_tokens(text)
        if used + n > budget:
            continue
        used += n
        lines.append(text)
        items.append({"text": text, "sources": list(records[i]["sources"])})
    return {"context": "\n".join(lines), "items": items}


def mmr_order(hits, records, query, toolkit, knobs):
    """``hits`` reordered greedily: relevance by position (1 first, falling linearly; scores would
    undo the expand order, which puts a hit's neighbours right behind it) against the redundancy with what is
    already chosen: the highest overlap of content words *beyond the question's* (Jaccard; evidence
    turns of one question share its words, near-duplicates share the rest), or embedding cosine."""
    lam = knobs["mmr_lambda"]
    rel = 1.0 - np.arange(len(hits)) / len(hits)
    if knobs.get("redundancy") == "embed":
        vecs = np.stack([np.asarray(v, dtype=np.float32) for v in toolkit.embed([records[i]["text"] for i, _s in hits])])
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9)
        sim = np.clip(vecs @ vecs.T, 0.0, 1.0)
    else:
        asked = set(stem_terms(query["question"]))
        vocab, rows = {}, []
        for i, _s in hits:
            rows.append([vocab.setdefault(t, len(vocab)) for t in content_set(records[i]["text"]) - asked])
        inc = np.zeros((len(hits), max(len(vocab), 1)), dtype=np.float32)
        for r, cols in enumerate(rows):
            inc[r, cols] = 1.0
        inter = inc @ inc.T
        size = inc.sum(axis=1)
        union = size[:, None] + size[None, :] - inter
        sim = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
    order, red = [], np.zeros(len(hits))
    free = np.ones(len(hits), dtype=bool)
    for _ in range(len(hits)):
        gain = np.where(free, lam * rel - (1 - lam) * red, -np.inf)
        j = int(np.argmax(gain))
        free[j] = False
        order.append(hits[j])
        red = np.maximum(red, sim[j])
    return order


@lru_cache(maxsize=65536)
def content_set(text):
    return frozenset(stem_terms(text))


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
