"""Adversarial harness (capitalised): every capitalised word and number seen, one item listing every id (candidate answers only).

Data for tests/test_adversarial.py (not a test): it must score (almost) nothing on evidence recall.
Run it yourself: ``mstar eval tests/adversarial/capitalised.py --task locomo --data PATH --split test``.
"""

import re

import bm25s

INSTRUCTIONS = "Answer from the memory below."
KNOBS = {"top_k": {"type": "int", "low": 1, "high": 200, "default": 60}}

_WORD = re.compile(r"\w\w+")
STOP = frozenset(
    "a an the and or but if then so of to in on at by for with from as is are was were be been being am i me my "
    "we us our you your he him his she her it its they them their this that these those do does did have has "
    "had not no yes oh ok just very really too also there here what which who how when where why will would "
    "can could should".split()
)


def terms(text):
    return [w for w in _WORD.findall(text.lower()) if w not in STOP]


class Memory:
    def __init__(self, toolkit, knobs):
        self.toolkit, self.knobs = toolkit, knobs
        self.turns, self.index, self.dirty = [], None, False

    def write(self, event):
        text = f"{event['speaker']}: {event['text']}" if event.get("speaker") else event["text"]
        self.turns.append({"id": event["id"], "text": text, "meta": event.get("meta") or {}})
        self.dirty = True

    def ranked(self, query):
        """The stored turns BM25 ranks for the question, best first (what the bm25 seed would show)."""
        if self.dirty:
            self.index = bm25s.BM25()
            self.index.index([terms(t["text"]) or [""] for t in self.turns], show_progress=False)
            self.dirty = False
        q = terms(query["question"])
        if not self.turns or not q:
            return []
        k = min(self.knobs["top_k"], len(self.turns))
        docs, scores = self.index.retrieve([q], k=k, show_progress=False)
        return [self.turns[int(d)] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def fit(self, pieces, budget):
        """The longest prefix of ``pieces`` (joined by newlines) within ``budget`` tokens."""
        out, used = [], 0
        for p in pieces:
            n = self.toolkit.count_tokens(p)
            if used + n > budget:
                break
            out.append(p)
            used += n
        return out

    def read(self, query):
        budget = query.get("budget", 1024)

        seen, words = set(), []
        for t in self.turns:
            for w in re.findall(r"\b(?:[A-Z]\w+|\d+)\b", t["text"]):
                if w not in seen:
                    seen.add(w)
                    words.append(w)
        text = " ".join(self.fit(words, budget))
        return {"context": text, "items": [{"text": text, "sources": [t["id"] for t in self.turns]}]}
