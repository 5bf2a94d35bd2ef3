"""Lexical retrieval with three repairs for conversational memory: query expansion by pseudo-relevance
feedback, relative dates resolved to absolute ones, and speaker- and session-aware scoring.

Idea: BM25 over whole turns (scored from an incremental index, as ``bm25s`` does) misses evidence for
three reasons that need no model to fix. (1) The question's words are not the turn's words: pseudo-
relevance feedback (Rocchio / RM3-style, Lavrenko & Croft 2001) adds the salient terms of the top
``prf_docs`` turns to the query with weight ``prf_weight``; a light suffix stemmer (``stem``) folds
"painted" / "painting" / "paints" together. (2) A turn says "yesterday" or "last Tuesday" and the
question names the date: with ``dates`` every relative date in a turn ("yesterday", "two weeks ago",
"last weekend", "next month", ...) is resolved against the turn's own time and its absolute day /
week / month tokens are indexed with the turn; the question's dates (absolute, or relative to the
time it is asked) become the same tokens, weighted by ``date_weight`` (``stamp``: a turn also carries
its own day). (3) Who said it and in which
conversation: a speaker named in the question multiplies that speaker's turns' scores by
``1 + speaker_boost``; every session is also scored as one document and ``session_weight`` of its
(normalised) score is added to each of its turns, so a session that is about the question lifts its
turns; a turn gains ``context_weight`` of its neighbours' scores (the answer to a matching question
rises), a soft neighbour window that costs no budget unless the neighbour earns its place
(``window`` > 0 adds the hard one: each hit brings the turns around it; ``context_from`` "before" /
"after" keeps one direction: a reply rises with its question, or a question with its reply); a turn that
opens its session is multiplied by ``1 + opener_boost`` (people open a conversation with what it is about:
"I just got back from a friend's wedding, can you help me..."; off by default). (4) The
budget is counted in tokens: one long turn can cost what ten short ones do, so with ``density`` > 0 the
packer orders hits by score / size^density (a knapsack's value per cost), a turn shorter than
``density_floor`` x budget counting as that size (short turns are not preferred among themselves).
Whole turns only: every item shown is one full turn (scoring credits only whole turns).
Simplifies: rule-based date grammar (English, day granularity; no "the Tuesday before last"); PRF is
one round; the stemmer is a suffix list, not Porter's.
Expectation (synthetic, tests/test_seeds_lexical_plus.py): on temporal probes (a date named in the
question, the turn saying "today") near-full recall with ``dates`` on, lexical level with it off; PRF
lifts multi-hop (clearly at ``prf_weight`` 1.0). The suite has no relative dates in turns, topical
sessions or speakers named by others, so those are checked on hand-built conversations.
Needs an LLM: no.

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
from datetime import date, timedelta

import numpy as np

INSTRUCTIONS = (
    "The memory below holds past conversation turns, most relevant first, as 'speaker: text'. Answer the question from these turns. Use the names and details exactly as they appear. "
    "If the turns do not contain the answer, say that it is not in memory."
)

KNOBS = {
    "top_k": {"type": "int", "low": 1, "high": 200, "default": 60},
    "k1": {"type": "float", "low": 0.3, "high": 3.0, "default": 1.5},
    "b": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "stem": {"type": "bool", "default": True},
    "prf_docs": {"type": "int", "low": 0, "high": 20, "default": 5},
    "prf_terms": {"type": "int", "low": 1, "high": 30, "default": 8},
    "prf_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.3},
    "dates": {"type": "bool", "default": True},
    "stamp": {"type": "bool", "default": True},
    "date_weight": {"type": "float", "low": 0.0, "high": 5.0, "default": 2.0},
    "speaker_boost": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.1},
    # A turn that opens its session: score x (1 + opener_boost). Off by default: a component for the search.
    "opener_boost": {"type": "float", "low": 0.0, "high": 2.0, "default": 0.0},
    "session_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.3},
    "context_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.3},
    "window": {"type": "int", "low": 0, "high": 5, "default": 0},
    "neighbor_decay": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "neighbor_max_chars": {"type": "int", "low": 50, "high": 5000, "default": 5000},
    # "follow": a hit's neighbours right behind it; "score": neighbours ranked by their decayed score.
    "neighbor_order": {"type": "cat", "choices": ["follow", "score"], "default": "follow"},
    "show_time": {"type": "bool", "default": False},
    # Which neighbour's score a turn gains with context_weight: both, the turn before it, the turn after it.
    "context_from": {"type": "cat", "choices": ["both", "before", "after"], "default": "both"},
    # Pack by score / size^density; 0: by score alone (the order retrieve and expand gave). The defaults
    # (0.5, 0.05) were chosen on LoCoMo and LongMemEval dev train (docs/BENCHMARKS.md#packing-by-value-per-token).
    "density": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "density_floor": {"type": "float", "low": 0.0, "high": 0.5, "default": 0.05},
}

_WORD = re.compile(r"\w\w+")
_STOP = frozenset(
    "the a an and or but of to in on at by for with from as is are was were be been am i me my we our you "
    "your he him his she her it its they them their this that these those do does did have has had not "
    "so if then there here what which who when where why how will would can could just very really".split()
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


# --- a light suffix stemmer: folds inflections so "painted", "painting" and "paints" match --------
_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s")


def stem(word):
    got = _STEMS.get(word)
    if got is None:
        got = _STEMS[word] = _strip(word)
    return got


_STEMS = {}


def _strip(word):
    if len(word) <= 3 or not word.isalpha():
        return word
    for suf in _SUFFIXES:
        if word.endswith(suf) and len(word) - len(suf) >= 3:
            word = word[: -len(suf)] + ("y" if suf == "ies" else "")
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":  # swimm -> swim
        word = word[:-1]
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def words(text, knobs):
    toks = terms(text)
    return [stem(t) for t in toks] if knobs["stem"] else toks


# --- dates: relative and absolute date expressions -> absolute day / week / month / year tokens ----
MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
WEEKDAYS = {d.lower(): i for i, d in enumerate(calendar.day_name)}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "few": 3, "several": 3}
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
_NUM = r"(\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|couple of|few|several)"
_DAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_D_MON = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?(?: of)? {_MON}\b,?( \d{{4}})?")
_MON_D = re.compile(rf"\b{_MON} (\d{{1,2}})(?:st|nd|rd|th)?\b,?( \d{{4}})?")
_IN_MON = re.compile(rf"\b(?:in|during) {_MON}\b,?( \d{{4}})?")
_IN_YEAR = re.compile(r"\b(?:in|during) (\d{4})\b")
_TODAY = re.compile(r"\b(today|tonight|this (morning|afternoon|evening))\b")
_YESTERDAY = re.compile(r"\b(yesterday|last night)\b")
_TOMORROW = re.compile(r"\btomorrow\b")
_AGO = re.compile(rf"\b{_NUM} (day|week|month|year)s? ago\b")
_WEEKDAY = re.compile(rf"\b(last|this|next|on) {_DAY}\b")
_PERIOD = re.compile(r"\b(last|this|next|past) (weekend|week|month|year)\b")
# Granularity order: a day also names its week and month; a week its month.
_COARSER = {"d": ("d", "w", "m"), "w": ("w", "m"), "m": ("m",), "y": ("y",)}


def date_token(gran, d):
    if gran == "d":
        return f"d{d:%Y%m%d}"
    if gran == "w":
        iso = d.isocalendar()
        return f"w{iso[0]}{iso[1]:02d}"
    return f"m{d:%Y%m}" if gran == "m" else f"y{d.year}"


def day_of(value):
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _safe_day(y, m, d):
    try:
        return date(y, m, d)
    except ValueError:
        return None


def find_dates(text, now):
    """[(granularity, date)] for the date expressions of ``text``: absolute ones, and relative ones
    resolved against ``now`` (a date; None: absolute ones only)."""
    t, out = text.lower(), []
    for m in _ISO.finditer(t):
        out.append(("d", _safe_day(int(m[1]), int(m[2]), int(m[3]))))
    for m in _D_MON.finditer(t):
        year = int(m[3]) if m[3] else (now.year if now else None)
        out.append(("d", year and _safe_day(year, MONTHS[m[2][:3]], int(m[1]))))
    for m in _MON_D.finditer(t):
        year = int(m[3]) if m[3] else (now.year if now else None)
        out.append(("d", year and _safe_day(year, MONTHS[m[1][:3]], int(m[2]))))
    for m in _IN_MON.finditer(t):
        year = int(m[2]) if m[2] else (now.year if now else None)
        out.append(("m", year and _safe_day(year, MONTHS[m[1][:3]], 1)))
    for m in _IN_YEAR.finditer(t):
        out.append(("y", _safe_day(int(m[1]), 1, 1)))
    if now is not None:
        out += relative_dates(t, now)
    return [(g, d) for g, d in out if d]


def _shift(now, days=0, months=0, years=0):
    """``now`` moved by whole days, months (to the 1st) or years (to Jan 1st); None out of range."""
    try:
        if months:
            y, m = divmod(now.month - 1 + months, 12)
            return date(now.year + y, m + 1, 1)
        return date(now.year + years, 1, 1) if years else now + timedelta(days=days)
    except (ValueError, OverflowError):
        return None


def relative_dates(t, now):
    out = []
    if _TODAY.search(t):
        out.append(("d", now))
    if _YESTERDAY.search(t):
        out.append(("d", _shift(now, days=-2 if "before yesterday" in t else -1)))
    if _TOMORROW.search(t):
        out.append(("d", _shift(now, days=1)))
    for m in _AGO.finditer(t):
        n = int(m[1]) if m[1].isdigit() else NUMBERS[m[1]]
        if n > 9999:
            continue  # not a date
        unit = m[2]
        out.append({"day": ("d", _shift(now, days=-n)), "week": ("w", _shift(now, days=-7 * n)),
                    "month": ("m", _shift(now, months=-n)), "year": ("y", _shift(now, years=-n))}[unit])
    for m in _WEEKDAY.finditer(t):
        wd = WEEKDAYS[m[2]]
        if m[1] in ("last", "on"):  # the latest such day before today
            out.append(("d", _shift(now, days=-((now.weekday() - wd - 1) % 7 + 1))))
        else:  # the next such day after today
            out.append(("d", _shift(now, days=(wd - now.weekday() - 1) % 7 + 1)))
    for m in _PERIOD.finditer(t):
        step = {"last": -1, "past": -1, "this": 0, "next": 1}[m[1]]
        if m[2] == "weekend":
            ahead = (5 - now.weekday()) % 7 + 7 * step
            if step < 0 and now.weekday() >= 5:
                ahead += 7  # said on a weekend, "last weekend" is the one before this
            out += [("d", _shift(now, days=ahead)), ("d", _shift(now, days=ahead + 1))]
        elif m[2] == "week":
            out.append(("w", _shift(now, days=7 * step)))
        elif m[2] == "month":
            out.append(("m", _shift(now, months=step)))
        else:
            out.append(("y", _shift(now, years=step)))
    return out


# --- encode: event -> one record per turn, with the absolute dates it speaks of ------------------
def encode(event, toolkit, knobs):
    speaker = event.get("speaker") or ""
    text = f"{speaker}: {event['text']}" if speaker else event["text"]
    rec = {"text": text, "sources": [event["id"]], "session": event.get("session"), "time": event.get("time"),
           "speaker": speaker}
    when = day_of(event.get("time"))
    if knobs["dates"]:
        found = find_dates(event["text"], when)
        if knobs["stamp"] and when:
            found.append(("d", when))
        rec["dates"] = sorted({date_token(c, d) for g, d in found for c in _COARSER[g]})
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

# --- index: an incremental BM25 index over turns, and one over sessions (each a document) --------
def record_terms_of(knobs):
    return lambda record: words(record["text"], knobs) + list(record.get("dates") or [])


def index(records, state, toolkit, knobs):
    made, doc_terms = {}, record_terms_of(knobs)

    def once(record):  # each new record's terms serve both indexes
        toks = made[id(record)] = doc_terms(record)
        return toks

    state["lp_bm25"] = bm25_sync(state.get("lp_bm25"), records, once)
    # Sessions: one document each, grown as its turns arrive (a replaced posting list, not a rebuild).
    st = state.get("lp_sess")
    if st is None or st["records"] is not records or st["n"] > len(records) or (st["n"] and records[st["n"] - 1] is not st["last"]):
        st = state["lp_sess"] = {"records": records, "n": 0, "last": None, "bm25": bm25_new(), "doc": {}, "toks": [],
                                 "of": array("i"), "prev": array("i"), "tail": {}, "speakers": {}}
    grown = {}
    for i in range(st["n"], len(records)):
        rec = records[i]
        key = str(rec.get("session"))
        doc = st["doc"].get(key)
        if doc is None:
            doc = st["doc"][key] = len(st["toks"])
            st["toks"].append([])
        grown.setdefault(doc, []).extend(made[id(rec)] if id(rec) in made else doc_terms(rec))
        st["of"].append(doc)
        st["prev"].append(st["tail"].get(key, -1))  # the turn before it in its session
        st["tail"][key] = i
        name = (rec.get("speaker") or "").strip()
        if name:
            st["speakers"].setdefault(name.split()[0].lower(), name)
    for doc in sorted(grown):
        old = st["toks"][doc]
        new = old + grown[doc]
        bm25_put(st["bm25"], doc, new, old if doc < st["bm25"]["n"] else None)
        st["toks"][doc] = new
    st["n"], st["last"] = len(records), records[-1] if records else None


# --- retrieve: BM25 + PRF expansion + date tokens, then session and speaker evidence ---------------
def bm25_dense(idx, q, k1, b):
    """Every document's BM25 score for query tokens ``q`` (a repeated token counts again)."""
    n = idx["n"]
    scores = np.zeros(n)
    if not n or not q:
        return scores
    lens = np.array(idx["lens"], dtype=np.float64)
    norm = k1 * ((1 - b) + b * lens / (idx["total"] / n))
    for t in q:
        p = idx["post"].get(t)
        if p is None:
            continue
        docs = np.array(p[0], dtype=np.int64)
        tf = np.array(p[1], dtype=np.float64)
        idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
        scores[docs] += idf * tf / (norm[docs] + tf)
    return scores


def prf_terms(scores, q, records, idx, knobs):
    """The ``prf_terms`` most salient terms of the top ``prf_docs`` turns: idf times the relative score
    of each top turn holding the term (RM3-like: the best turn's words count most); the query's own
    terms left out, and words seen in one turn only (they find nothing else)."""
    top = [i for i in np.argsort(-scores, kind="stable")[: knobs["prf_docs"]] if scores[i] > 0]
    n, seen, weight = idx["n"], set(q), Counter()
    for i in top:
        for t in dict.fromkeys(words(records[i]["text"], knobs)):  # not a set: its order follows the hash seed
            p = idx["post"].get(t)
            if t not in seen and p is not None and len(p[0]) > 1:
                weight[t] += math.log(1 + (n - len(p[0]) + 0.5) / (len(p[0]) + 0.5)) * scores[i] / scores[top[0]]
    return [t for t, _w in weight.most_common(knobs["prf_terms"])]


def question_dates(query):
    when = day_of(query.get("time"))
    return sorted({date_token(g, d) for g, d in find_dates(query["question"], when)})


def retrieve(query, records, state, toolkit, knobs):
    idx = state.get("lp_bm25")
    q = words(query["question"], knobs)
    if not records or idx is None or not idx["n"]:
        return []
    k1, b = knobs["k1"], knobs["b"]
    scores = bm25_dense(idx, q, k1, b)
    if knobs["prf_docs"] > 0 and knobs["prf_weight"] > 0 and scores.any():
        scores = scores + knobs["prf_weight"] * bm25_dense(idx, prf_terms(scores, q, records, idx, knobs), k1, b)
    if knobs["dates"] and knobs["date_weight"] > 0:
        scores = scores + knobs["date_weight"] * bm25_dense(idx, question_dates(query), k1, b)
    sess = state.get("lp_sess")
    if sess is not None and len(sess["of"]) == len(scores):
        of = np.array(sess["of"], dtype=np.int64)
        prev = np.array(sess["prev"], dtype=np.int64)  # -1: the turn opens its session
        if knobs["context_weight"] > 0:  # a turn next to a matching turn (a reply, its question) gains
            has = prev >= 0
            near = np.zeros_like(scores)
            if knobs["context_from"] != "after":
                near[has] += scores[prev[has]]
            if knobs["context_from"] != "before":
                np.add.at(near, prev[has], scores[has])
            scores = scores + knobs["context_weight"] * near
        if knobs["session_weight"] > 0 and scores.any():
            ss = bm25_dense(sess["bm25"], q, k1, b)
            if ss.max() > 0:
                scores = scores + knobs["session_weight"] * scores.max() * ss[of] / ss.max()
        if knobs["opener_boost"] > 0:
            scores = np.where(prev < 0, scores * (1 + knobs["opener_boost"]), scores)
        if knobs["speaker_boost"] > 0:
            asked = set(terms(query["question"]))
            named = {full for first, full in sess["speakers"].items() if first in asked}
            if named:
                mine = np.array([(r.get("speaker") or "").strip() in named for r in records])
                scores = np.where(mine, scores * (1 + knobs["speaker_boost"]), scores)
    order = np.lexsort((np.arange(len(scores)), -scores))[: knobs["top_k"]]
    return [(int(i), float(scores[i])) for i in order if scores[i] > 0]


# --- expand: each hit brings the turns around it (same session, by write order) -------------------
def expand(hits, records, state, knobs):
    window = knobs["window"]
    if window <= 0:
        return hits
    # seq -> position, extended as records are appended (rebuilt only for a different list).
    cache = state.get("lp_seq")
    if cache is None or cache[0] is not records or cache[1] > len(records):
        cache = state["lp_seq"] = [records, 0, {}]
    by_seq = cache[2]
    for i in range(cache[1], len(records)):
        by_seq[records[i]["seq"]] = i
    cache[1] = len(records)
    out, seen = [], set()
    for i, score in hits:
        group = [i]
        for d in range(1, window + 1):
            for j in (by_seq.get(records[i]["seq"] - d), by_seq.get(records[i]["seq"] + d)):
                # A neighbour rides along only when it is short: a long one costs budget a hit could use.
                if (j is not None and records[j].get("session") == records[i].get("session")
                        and len(records[j]["text"]) <= knobs["neighbor_max_chars"]):
                    group.append(j)
        for rank, j in enumerate(group):
            if j not in seen:
                seen.add(j)
                out.append((j, score * (1.0 if rank == 0 else knobs["neighbor_decay"])))
    if knobs["neighbor_order"] == "score":
        out.sort(key=lambda h: -h[1])  # stable: equal scores keep their order
    return out


# --- pack: whole turns in ranked order, within the token budget -----------------------------------
def render(record, knobs):
    if knobs["show_time"] and record.get("time"):
        return f"[{str(record['time'])[:10]}] {record['text']}"
    return record["text"]


def pack(query, hits, records, toolkit, knobs):
    budget = query.get("budget", 1024)
    used, lines, items = 0, [], []
    shown = {i: render(records[i], knobs) for i, _ in hits}
    cost = {i: toolkit.count_tokens(text) for i, text in shown.items()}
    if knobs["density"] > 0:
        # Value per token: a long turn must score that much higher to take the room of shorter ones.
        floor = max(1.0, knobs["density_floor"] * budget)
        hits = sorted(hits, key=lambda h: -h[1] / max(cost[h[0]], floor) ** knobs["density"])  # stable
    for i, _score in hits:
        text, n = shown[i], cost[i]
        if used + n > budget:
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
