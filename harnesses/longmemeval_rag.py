"""LongMemEval-style retrieval: rounds as the value unit, fact-augmented keys, time-aware query expansion.

Idea (Wu et al. 2024, "LongMemEval: Benchmarking Chat Assistants on Long-Term Interactive Memory",
section 5): the paper's best memory designs decompose sessions into *rounds* (a user turn and the
reply to it) and store each round as one value; the retrieval *key* of a round is its text expanded
with facts extracted from it ("fact-augmented key expansion"); and a *time-aware query expansion*
turns the time expressions of the question into a date range that narrows the search to the rounds
whose timestamp falls inside it. Here: rounds are ``round_size`` consecutive turns of one session;
keys are ranked with BM25 (scored as ``bm25s`` does, from an incremental index); every turn of a hit round is returned (each turn is its own
item, with its date); a question with a time expression ("on 2023-05-08", "in May 2023", "last week",
"3 days ago", "yesterday", relative to the question's ``time``) puts the in-range rounds first.
Expectation: it wins on temporal probes whose dates live only in ``event["time"]``, not in the text.
Simplifies: the paper extracts the time range with an LLM; here it is parsed with rules
(``time_range``), documented in code. Without an LLM the key is the round text itself; with one
(``toolkit.has_llm`` and ``fact_keys``), each turn's extracted facts are appended to its round's key.
Expectation (synthetic, tests/test_seeds_synthetic.py): wins on temporal probes (dates only in
``event["time"]``): near-full recall there, above every other seed but ``lexical_plus`` (which
also resolves dates), and back at lexical level with ``time_mode=off``.
Needs an LLM: no (optional, for fact keys).

Modular harness (docs/HARNESS.md): encode / index / retrieve / expand / pack / maintain.
"""

import calendar
import datetime as _dt
import json
import math
import re
from array import array
from base64 import b64decode, b64encode
from bisect import bisect_left
from collections import Counter
from datetime import datetime, timedelta

import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation rounds, most relevant first, each turn as "
    "'[date] speaker: text'. Dates are when the turn was said: resolve words like 'yesterday' or 'last "
    "week' inside a turn against its date. Answer from these turns; if they do not contain the answer, "
    "say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 40},
    "round_size": {"type": "int", "low": 1, "high": 6, "default": 2},
    "time_mode": {"type": "cat", "choices": ["front", "filter", "off"], "default": "front"},
    "fact_keys": {"type": "bool", "default": False},
    "show_time": {"type": "bool", "default": True},
}

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)
FACT_PROMPT = ('List the facts stated in this conversation turn (short sentences naming who), as JSON only: '
               '{"facts": ["..."]}.\n\nTURN: ')


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


# --- time expressions -> [start, end) date range (the rule-based stand-in for the paper's LLM) -------
MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "few": 3}
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_NUM = r"(\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|couple of|few)"


def parse_time(value):
    try:
        return datetime.fromisoformat(str(value)[:19]) if value else None
    except ValueError:
        return None


def _day(y, m, d):
    try:
        start = datetime(y, m, d)
    except ValueError:
        return None
    return start, start + timedelta(days=1)


def _month(y, m):
    start = datetime(y, m, 1)
    return start, datetime(y + (m == 12), m % 12 + 1, 1)


def time_range(question, now):
    """The first time expression of ``question`` as a ``(start, end)`` datetime pair, or None."""
    q = question.lower()
    if m := re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", q):
        return _day(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? {_MON},? (\d{{4}})\b", q):
        return _day(int(m[3]), MONTHS[m[2][:3]], int(m[1]))
    if m := re.search(rf"\b{_MON} (\d{{1,2}})(?:st|nd|rd|th)?,? (\d{{4}})\b", q):
        return _day(int(m[3]), MONTHS[m[1][:3]], int(m[2]))
    if m := re.search(rf"\b{_MON},? (\d{{4}})\b", q):
        return _month(int(m[2]), MONTHS[m[1][:3]])
    if m := re.search(r"\b(?:in|during) (\d{4})\b", q):
        return datetime(int(m[1]), 1, 1), datetime(int(m[1]) + 1, 1, 1)
    if now is None:
        return None
    if m := re.search(rf"\b(?:in|during) {_MON}\b", q):  # a month without a year: the latest one before now
        month = MONTHS[m[1][:3]]
        return _month(now.year if month <= now.month else now.year - 1, month)
    today = datetime(now.year, now.month, now.day)
    if re.search(r"\byesterday\b", q):
        return today - timedelta(days=1), today
    if re.search(r"\btoday\b|\bthis morning\b", q):
        return today, today + timedelta(days=1)
    if m := re.search(rf"\b{_NUM} (day|week|month|year)s? ago\b", q):
        n = int(m[1]) if m[1].isdigit() else NUMBERS[m[1]]
        days = {"day": 1, "week": 7, "month": 30, "year": 365}[m[2]] * n
        slack = {"day": 1, "week": 3, "month": 15, "year": 120}[m[2]]
        return today - timedelta(days=days + slack), today - timedelta(days=days - slack - 1)
    if m := re.search(rf"\b(?:past|last) {_NUM} (day|week|month)s?\b", q):
        n = int(m[1]) if m[1].isdigit() else NUMBERS[m[1]]
        return today - timedelta(days={"day": 1, "week": 7, "month": 30}[m[2]] * n), today + timedelta(days=1)
    if m := re.search(r"\blast (monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", q):
        back = (today.weekday() - WEEKDAYS[m[1]] - 1) % 7 + 1  # the most recent such day before today
        return today - timedelta(days=back), today - timedelta(days=back - 1)
    if re.search(r"\blast week(end)?\b", q):
        return today - timedelta(days=13), today + timedelta(days=1)
    if re.search(r"\blast month\b", q):
        first = datetime(today.year, today.month, 1)
        return _month((first - timedelta(days=1)).year, (first - timedelta(days=1)).month)
    if re.search(r"\bthis month\b", q):
        return _month(today.year, today.month)
    if re.search(r"\blast year\b", q):
        return datetime(today.year - 1, 1, 1), datetime(today.year, 1, 1)
    if re.search(r"\bthis year\b", q):
        return datetime(today.year, 1, 1), datetime(today.year + 1, 1, 1)
    return None


# --- encode: one turn -> one record (plus extracted facts for the key when an LLM is there) --------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    rec = {"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time")}
    if knobs["fact_keys"] and toolkit.has_llm:
        try:
            reply = toolkit.llm([{"role": "user", "content": FACT_PROMPT + text}], temperature=0)
        except getattr(toolkit, "LLMError", RuntimeError):
            reply = ""  # the model failed: this turn's key is its text alone
        m = re.search(r"\{.*\}", reply or "", re.S)
        try:
            facts = json.loads(m.group(0)).get("facts") if m else None
        except (ValueError, AttributeError):
            facts = None
        if isinstance(facts, list):
            rec["key_facts"] = " ".join(f for f in facts if isinstance(f, str))
        else:
            toolkit.log(f"longmemeval_rag: fact reply unreadable, key = text only: {str(reply)[:200]!r}")
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


# --- index: group turns into rounds; one BM25 key per round (incremental) -------------------------
def round_terms(records, members):
    return terms(" ".join(records[i]["text"] + " " + records[i].get("key_facts", "") for i in members))


def index(records, state, toolkit, knobs):
    # Turns arrive in seq order, so rounds only grow at the tail: a write re-indexes the last round's
    # key and adds new rounds, with the same rounds and scores as grouping every turn afresh.
    st = state.get("lme")
    n = st["n"] if st is not None else 0
    seqs = ([] if st is None or st["seq"] is None else [st["seq"]]) + [records[i].get("seq", i) for i in range(n, len(records))]
    if (st is None or st["records"] is not records or n > len(records) or (n and records[n - 1] is not st["last"])
            or any(a > b for a, b in zip(seqs, seqs[1:], strict=False))):
        st = state["lme"] = {"records": records, "n": 0, "last": None, "seq": None, "bm25": bm25_new(), "key": None}
        state["lme_rounds"], state["lme_times"] = [], []
        order = sorted(range(len(records)), key=lambda i: records[i].get("seq", i))
    else:
        order = range(n, len(records))
    rounds, idx = state["lme_rounds"], st["bm25"]
    tail, tail_len = len(rounds) - 1, len(rounds[-1]) if rounds else 0
    for i in order:
        current = rounds[-1] if rounds else None
        if current and len(current) < knobs["round_size"] and records[current[-1]].get("session") == records[i].get("session"):
            current.append(i)
        else:
            rounds.append([i])
            state["lme_times"].append(parse_time(records[i].get("time")))
    for r in range(max(tail, 0), len(rounds)):
        if r == tail and len(rounds[r]) == tail_len:
            continue
        key = round_terms(records, rounds[r])
        bm25_put(idx, r, key, st["key"] if r == tail else None)
        st["key"] = key
    st["n"], st["last"] = len(records), records[-1] if records else None
    st["seq"] = records[order[-1]].get("seq", order[-1]) if len(order) else st["seq"]


# --- retrieve: BM25 over round keys; a time expression in the question puts in-range rounds first --
def retrieve(query, records, state, toolkit, knobs):
    rounds = state.get("lme_rounds") or []
    if not rounds:
        return []
    q = terms(query["question"]) or [""]
    score = dict(bm25_top(state["lme"]["bm25"], q, len(rounds)))
    ranked = sorted(score, key=lambda r: -score[r])
    span = time_range(query["question"], parse_time(query.get("time"))) if knobs["time_mode"] != "off" else None
    if span:
        inside = [r for r in range(len(rounds)) if state["lme_times"][r] and span[0] <= state["lme_times"][r] < span[1]]
        if inside:
            inside.sort(key=lambda r: (-score.get(r, 0.0), r))
            chosen = set(inside)
            rest = [] if knobs["time_mode"] == "filter" else [r for r in ranked if r not in chosen]
            ranked = inside + rest
    hits = []
    for r in ranked[: knobs["top_k"]]:
        hits += [(i, score.get(r, 0.0)) for i in rounds[r]]
    return hits


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
