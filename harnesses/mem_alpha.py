"""Mem-α-style memory: core / episodic / semantic stores edited by LLM-chosen operations per chunk.

Idea (Wang et al. 2025, "Mem-α: Learning Memory Construction via Reinforcement Learning"): memory has
three parts. Core memory is a short text that is always shown (who the user is, standing goals);
episodic memory holds time-stamped events; semantic memory holds general facts. The conversation is
consumed in chunks; for each chunk the model sees the core text, the chunk, and the stored entries most
related to it (by id), and answers with operations: ``insert`` into episodic or semantic, ``update`` an
entry by id (or rewrite the core), ``delete`` an entry by id. Each entry keeps ``sources`` (the event ids
of the chunks that wrote it). Read = the core text plus a BM25 search over episodic + semantic entries,
within the token budget.
Simplifies: the paper trains the construction policy with RL from downstream QA reward; here the
policy is whatever model ``--model`` names, prompted zero-shot (evolution tunes the prompt and knobs
instead). Operations are one JSON reply per chunk rather than multi-turn tool calls. A malformed reply
or an unknown operation / store / id is logged and skipped.
Expectation (synthetic, tests/test_seeds_synthetic.py): offline the evaluator reports every probe as
``needs_llm``, never a score; the operations are tested with mocked replies (tests/test_seeds_llm.py).
Needs an LLM: yes (``NEEDS_LLM``); offline it is skipped as "needs --model".
"""

import json
import math
import re
from array import array
from bisect import bisect_left
from collections import Counter

import numpy as np

NEEDS_LLM = True

INSTRUCTIONS = (
    "The memory below starts with CORE memory (always true background), then EPISODIC entries (dated "
    "events) and SEMANTIC entries (general facts), most relevant first. Answer the question from them; "
    "prefer dated episodic entries for questions about when something happened. If the memory does not "
    "contain the answer, say that it is not in memory."
)

KNOBS = {
    "chunk_turns": {"type": "int", "low": 1, "high": 50, "default": 8},
    "related_k": {"type": "int", "low": 0, "high": 30, "default": 8},
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 40},
    "core_max_tokens": {"type": "int", "low": 16, "high": 512, "default": 128},
}

STORES = ("episodic", "semantic")
OP_PROMPT = (
    "You build the memory of an assistant from a conversation, chunk by chunk. Memory has CORE (a short "
    "text always shown: identities, relationships, standing preferences and goals), EPISODIC (dated "
    "events: who did what, when) and SEMANTIC (general facts). Given the current core, the related "
    "stored entries (with ids) and the NEW CHUNK, reply with JSON only: "
    '{"operations": [{"op": "insert", "store": "episodic|semantic", "text": "..."}, '
    '{"op": "update", "store": "episodic|semantic|core", "id": "<id; none for core>", "text": "..."}, '
    '{"op": "delete", "store": "episodic|semantic", "id": "<id>"}]}. '
    "Keep entries short and self-contained; put the date in episodic entries; rewrite core only when it changes."
)

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def parse_json(reply):
    m = re.search(r"\{.*\}", reply or "", re.S)
    if not m:
        return None
    try:
        out = json.loads(m.group(0))
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def turn_line(event):
    when = (event.get("time") or "")[:10]
    who = event.get("speaker") or "someone"
    return f"[{when}] {who}: {event.get('text', '')}" if when else f"{who}: {event.get('text', '')}"


def clip_tokens(text, limit, toolkit):
    """Cut ``text`` to at most ``limit`` tokens, on word boundaries: the core must stay short."""
    while text and toolkit.count_tokens(text) > limit:
        text = text.rsplit(" ", 1)[0] if " " in text else ""
    return text


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


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit, self.knobs = toolkit, knobs
        self.core = {"text": "", "sources": []}
        self.entries = {"episodic": {}, "semantic": {}}  # id -> {"text", "sources", "time"}
        self.next_id, self.pending = 0, []
        # The search index over episodic + semantic entries (in that order), kept in step with each
        # operation; None: rebuilt at the next search (a delete, or an insert that shifts positions).
        self.bm25, self.flat, self.pos = None, [], {}

    # --- write: events buffer into chunks; each chunk is one LLM call with a list of operations ---
    def write(self, event):
        self.pending.append(event)
        if len(self.pending) >= self.knobs["chunk_turns"]:
            self.flush()

    def manage(self, phase):
        self.flush()

    def flush(self):
        if not self.pending:
            return
        chunk, self.pending = self.pending, []
        chunk_text = "\n".join(turn_line(e) for e in chunk)
        related = self.search(chunk_text, self.knobs["related_k"]) if self.knobs["related_k"] else []
        shown = "\n".join(f"{eid} ({store}): {e['text']}" for store, eid, e in related) or "(none)"
        prompt = (f"{OP_PROMPT}\n\nCORE:\n{self.core['text'] or '(empty)'}\n\nRELATED ENTRIES:\n{shown}"
                  f"\n\nNEW CHUNK:\n{chunk_text}")
        try:
            reply = self.toolkit.llm([{"role": "user", "content": prompt}], temperature=0)
        except getattr(self.toolkit, "LLMError", RuntimeError) as err:
            # The model failed (down, context overflow): keep the chunk verbatim in the episodic store
            # rather than lose it.
            self.toolkit.log(f"mem_alpha: model call failed, chunk kept verbatim: {str(err)[:200]}")
            self.apply({"op": "insert", "store": "episodic", "text": chunk_text}, [e["id"] for e in chunk],
                       chunk[-1].get("time"))
            return
        data = parse_json(reply)
        ops = data.get("operations") if data else None
        if not isinstance(ops, list):
            self.toolkit.log(f"mem_alpha: reply has no operations list, chunk skipped: {str(reply)[:200]!r}")
            return
        ids, when = [e["id"] for e in chunk], chunk[-1].get("time")
        for op in ops:
            self.apply(op, ids, when)

    def apply(self, op, ids, when):
        if not isinstance(op, dict):
            self.toolkit.log(f"mem_alpha: operation is not an object, skipped: {op!r}")
            return
        kind, store = str(op.get("op", "")).lower(), str(op.get("store", "")).lower()
        text = op.get("text").strip() if isinstance(op.get("text"), str) else ""
        if kind == "update" and store == "core":
            self.core = {"text": clip_tokens(text, self.knobs["core_max_tokens"], self.toolkit),
                         "sources": list(dict.fromkeys(self.core["sources"] + ids))}
            return
        if store not in STORES or kind not in ("insert", "update", "delete"):
            self.toolkit.log(f"mem_alpha: unknown operation {kind!r} on store {store!r}, skipped")
            return
        entries = self.entries[store]
        if kind == "insert":
            if text:
                self.next_id += 1
                eid = f"{store[0]}{self.next_id}"
                entries[eid] = {"text": text, "sources": list(ids), "time": when}
                if self.bm25 is not None and (store == STORES[-1] or not self.entries[STORES[-1]]):
                    self.pos[eid] = len(self.flat)  # appended at the end of the flat order
                    self.flat.append((store, eid, entries[eid]))
                    bm25_put(self.bm25, self.pos[eid], terms(text))
                else:
                    self.bm25 = None
            return
        eid = str(op.get("id", ""))
        if eid not in entries:
            self.toolkit.log(f"mem_alpha: {kind} names no {store} entry {eid!r}, skipped")
            return
        if kind == "delete":
            del entries[eid]
            self.bm25 = None
        elif text:
            old = entries[eid]
            entries[eid] = {"text": text, "sources": list(dict.fromkeys(old["sources"] + ids)), "time": when}
            if self.bm25 is not None:
                self.flat[self.pos[eid]] = (store, eid, entries[eid])
                bm25_put(self.bm25, self.pos[eid], terms(text), terms(old["text"]))

    # --- read: core always, then BM25 over episodic + semantic ---------------------------------
    def search(self, text, k):
        if self.bm25 is None:
            self.flat = [(s, eid, e) for s in STORES for eid, e in self.entries[s].items()]
            self.pos = {eid: d for d, (_s, eid, _e) in enumerate(self.flat)}
            self.bm25 = bm25_new()
            for d, (_s, _eid, e) in enumerate(self.flat):
                bm25_put(self.bm25, d, terms(e["text"]))
        q = terms(text)
        if not self.flat or not q or k <= 0:
            return []
        return [self.flat[d] for d, _s in bm25_top(self.bm25, q, k)]

    def render(self, store, entry):
        when = f"[{str(entry['time'])[:10]}] " if store == "episodic" and entry.get("time") else ""
        return f"({store}) {when}{entry['text']}"

    def read(self, query):
        self.flush()
        budget = query.get("budget", 1024)
        used, lines, items = 0, [], []
        if self.core["text"]:
            text = f"CORE: {self.core['text']}"
            n = self.toolkit.count_tokens(text)
            if n <= budget:
                used, lines = n, [text]
                items.append({"text": text, "sources": list(self.core["sources"])})
        for store, _eid, entry in self.search(query["question"], self.knobs["top_k"]):
            text = self.render(store, entry)
            n = self.toolkit.count_tokens(text)
            if used + n > budget:
                continue
            used += n
            lines.append(text)
            items.append({"text": text, "sources": list(entry["sources"])})
        return {"context": "\n".join(lines), "items": items}

    def dump(self):
        self.flush()
        out = [{"text": f"CORE: {self.core['text']}", "sources": self.core["sources"], "store": "core"}
               ] if self.core["text"] else []
        for store in STORES:
            out += [{"text": e["text"], "sources": e["sources"], "store": store, "id": eid}
                    for eid, e in self.entries[store].items()]
        return out
