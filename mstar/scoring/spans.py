"""Where an event's text is shown in a context: in-order spans over word tokens, each claimed once.

Text is compared as lower-cased word tokens (``\\w+``, the word part of the budget lexer in
``mstar.tokens``), so spacing and punctuation never matter and nothing finer than a word does.

An event of ``n`` word tokens is *held* by a token range of the context when some window of that range
is within ``floor((1 - THETA) * n)`` unit-cost edits (insert, delete, substitute a token) of the event's
tokens (approximate substring matching, Sellers 1980). With ``THETA = 0.95``: at least 95 % of the event's
tokens, in order, inside a window at most 5 % longer than the event. A bag of the event's words, its words
reversed or shuffled, its first 60 %, or its words braided with another turn's are all far outside that.

Every credited event *claims* the window it matched; a later event cannot use claimed tokens, so one
shown copy of a text credits one event, however many ids list it.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

THETA = 0.95
# Upper bound on dynamic-programming cells (event tokens x window tokens) per read: a hostile item that
# lists thousands of near-matching ids cannot make scoring slow (~0.3 s at most). A whole-turn harness needs
# none (its events match contiguously); an item-sized alignment of a 30-token turn is ~3,000 cells.
MAX_DP_CELLS = 2_000_000
# Upper bound on tokens scanned per read outside the alignment (exact search, pre-filter, tokenising item
# occurrences): a read of thousands of distinct overlapping items, each listing hundreds of ids, stays
# seconds, not minutes. A whole-turn read scans each evidence turn's item once (~10^3 tokens in all).
MAX_SCAN_TOKENS = 2_000_000

_WORD_RE = re.compile(r"\w+")
_ONE_WORD_CHAR = re.compile(r"\w")


def normalise_ws(text: str) -> str:
    # str.split() splits on exactly what re's \s matches (str.isspace), ~5x faster than a regex sub.
    return " ".join(text.split())


def allowed_edits(n: int) -> int:
    """Edits allowed when matching an event of ``n`` word tokens (0 below 20 tokens: exact)."""
    return int((1.0 - THETA) * n + 1e-9)


class _Occurrence:
    """The word tokens wholly inside one item occurrence (tokenised only when a source needs them)."""

    __slots__ = ("pos", "end", "words", "starts", "ends", "codes")

    def __init__(self, norm: str, pos: int, end: int):
        self.pos, self.end = pos, end
        matches = list(_WORD_RE.finditer(norm, pos, end))
        # Only tokens wholly inside the occurrence count: "ab" shown inside "xaby" shows no word "ab".
        if matches and pos > 0 and matches[0].start() == pos and _ONE_WORD_CHAR.match(norm, pos - 1):
            matches = matches[1:]
        if matches and end < len(norm) and matches[-1].end() == end and _ONE_WORD_CHAR.match(norm, end):
            matches = matches[:-1]
        self.words = [m.group().lower() for m in matches]
        self.starts = [m.start() for m in matches]
        self.ends = [m.end() for m in matches]
        self.codes: np.ndarray | None = None


class ContextSpans:
    """One read's context: where items occur, and which characters credited events have claimed."""

    def __init__(self, context: str):
        self.norm = normalise_ws(context)
        self.claimed = bytearray(len(self.norm))  # per character; a claim covers whole tokens
        self._next_occurrence: dict[str, int] = {}
        self._next_symbolic: dict[tuple[int, str], int] = {}
        self._tokens: dict[tuple[int, int], _Occurrence] = {}
        self._ids: dict[str, int] = {}
        self.dp_cells = 0
        self.scanned = 0

    @property
    def exhausted(self) -> bool:
        """The read has used its work budget: nothing more can be credited."""
        return self.scanned > MAX_SCAN_TOKENS

    def occurrence(self, item_text: str) -> tuple[int, int] | None:
        """The next free occurrence of ``item_text`` in the context, as (char start, char end).

        Items with the same text take successive, non-overlapping occurrences; None when the text is
        empty or has no free occurrence left (the item is not shown).
        """
        text = normalise_ws(item_text)
        if not text:
            return None
        pos = self.norm.find(text, self._next_occurrence.get(text, 0))
        if pos < 0:
            return None
        end = pos + len(text)
        self._next_occurrence[text] = end
        return pos, end

    def _occ(self, occ: tuple[int, int]) -> _Occurrence:
        o = self._tokens.get(occ)
        if o is None:
            o = self._tokens[occ] = _Occurrence(self.norm, *occ)
        return o

    def _runs(self, o: _Occurrence) -> list[tuple[int, int]]:
        n = len(o.words)
        if self.claimed.find(1, o.pos, o.end) < 0:
            return [(0, n)] if n else []  # the usual case: nothing claimed here yet
        runs, a = [], None
        for i in range(n):
            if self.claimed[o.starts[i]]:
                if a is not None:
                    runs.append((a, i))
                    a = None
            elif a is None:
                a = i
        if a is not None:
            runs.append((a, n))
        return runs

    def claim(self, occ: tuple[int, int], event_words: list[str], event_text: str) -> bool:
        """Credit an event inside occurrence ``occ`` if an unclaimed window holds it; claim that window."""
        n = len(event_words)
        if n == 0:
            return self._claim_symbolic(occ, event_text)
        if self.scanned > MAX_SCAN_TOKENS:
            return False
        o = self._occ(occ)
        self.scanned += 2 * len(o.words)  # the runs, and the exact search or the pre-filter over them
        k = allowed_edits(n)
        runs = [r for r in self._runs(o) if r[1] - r[0] >= n - k]
        for a, b in runs:
            hit = self._exact(o.words, a, b, event_words)
            if hit is not None:
                self._mark(o, hit, hit + n)
                return True
        if k == 0:
            return False
        need = Counter(event_words)
        for a, b in runs:
            have = Counter(o.words[a:b])
            if sum(min(c, have[w]) for w, c in need.items()) < n - k:
                continue  # fewer shared tokens than a match needs: no alignment can succeed
            if self.dp_cells + n * (b - a) > MAX_DP_CELLS:
                return False
            self.dp_cells += n * (b - a)
            window = self._align(o, a, b, event_words, k)
            if window is not None:
                self._mark(o, *window)
                return True
        return False

    @staticmethod
    def _exact(words: list[str], a: int, b: int, ev: list[str]) -> int | None:
        n, first, last = len(ev), ev[0], b - len(ev)
        p = a
        while p <= last:
            try:
                p = words.index(first, p, last + 1)  # C-speed scan to the next candidate start
            except ValueError:
                return None
            if words[p : p + n] == ev:
                return p
            p += 1
        return None

    def _align(self, o: _Occurrence, a: int, b: int, ev: list[str], k: int) -> tuple[int, int] | None:
        """Sellers' approximate substring match of ``ev`` in tokens [a, b); the best window if within ``k``."""
        if o.codes is None:
            ids = self._ids
            o.codes = np.array([ids.setdefault(w, len(ids)) for w in o.words], dtype=np.int64)
        w = o.codes[a:b]
        m = len(w)
        e = np.array([self._ids.get(t, -1) for t in ev], dtype=np.int64)
        j = np.arange(m + 1, dtype=np.int64)
        big = m + 2
        cost = np.zeros(m + 1, dtype=np.int64)  # row 0: an empty prefix matches anywhere for free
        start = j.copy()
        for i in range(1, len(ev) + 1):
            diag = cost[:-1] + (w != e[i - 1])
            up = cost[1:] + 1
            take_diag = diag <= up
            c = np.empty(m + 1, dtype=np.int64)
            s = np.empty(m + 1, dtype=np.int64)
            c[0], s[0] = i, 0
            c[1:] = np.where(take_diag, diag, up)
            s[1:] = np.where(take_diag, start[:-1], start[1:])
            # Insertions along the row: D[j] = min_{j' <= j} (c[j'] + j - j'); one key carries the value and
            # (for ties) the latest start, so a cumulative minimum solves the row without a Python loop.
            key = (c - j + big) * big + (big - 1 - s)
            key = np.minimum.accumulate(key)
            cost = key // big - big + j
            start = big - 1 - key % big
        best = int(np.argmin(cost[1:])) + 1
        if cost[best] > k:
            return None
        return a + int(start[best]), a + best

    def _mark(self, o: _Occurrence, a: int, b: int) -> None:
        lo, hi = o.starts[a], o.ends[b - 1]
        self.claimed[lo:hi] = b"\x01" * (hi - lo)

    def _claim_symbolic(self, occ: tuple[int, int], event_text: str) -> bool:
        # An event with no word token (e.g. "?!") must appear verbatim, each credit at its own place.
        text = normalise_ws(event_text).lower()
        if not text:
            return False
        key = (occ[0], text)
        pos = self.norm.lower().find(text, self._next_symbolic.get(key, occ[0]), occ[1])
        if pos < 0:
            return False
        self._next_symbolic[key] = pos + len(text)
        return True


def holds(text: str, event_words: list[str], event_text: str) -> bool:
    """Whether ``text`` alone holds the event as an in-order span (no claims: diagnosis of stored records)."""
    spans = ContextSpans(text)
    return spans.claim((0, len(spans.norm)), event_words, event_text)
