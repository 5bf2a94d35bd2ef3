"""The incremental BM25 index of the bm25 / bm25_neighbors seeds scores exactly as bm25s does.

An agent writes a turn and then reads; the seeds once rebuilt a bm25s index at every such read. The
incremental index must not change a single score or rank: checked here against a bm25s index built
from scratch at each read, over interleaved writes and reads, unknown words, empty turns and a manage().
"""

from __future__ import annotations

import random

import bm25s
import pytest

from mstar.harness.loader import load_module, load_program
from mstar.toolkit import Toolkit

WORDS = ("cat kayak Lisbon violin marathon garden Miso sister parrot Reykjavik blue red green tent piano "
         "novel camera puppy bike Oslo Kyoto ran bought saw loved painted").split()


def reference_hits(mod, records, query, knobs):
    """The seeds' former code path: a fresh bm25s index over every record, then retrieve."""
    q = mod.terms(query)
    if not records or not q:
        return []
    r = bm25s.BM25(k1=knobs["k1"], b=knobs["b"])
    r.index([mod.terms(x["text"]) or [""] for x in records], show_progress=False)
    docs, scores = r.retrieve([q], k=min(knobs["top_k"], len(records)), show_progress=False)
    return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]


@pytest.mark.parametrize("seed", ["bm25", "bm25_neighbors"])
@pytest.mark.parametrize("knobs", [{}, {"k1": 0.7, "b": 0.2, "top_k": 5}, {"k1": 2.9, "b": 1.0, "top_k": 200}])
def test_incremental_scores_equal_a_fresh_bm25s_index(seed, knobs):
    prog = load_program(seed)
    mod = load_module(prog.source)
    kn = {**{k: s.default for k, s in prog.knob_specs.items()}, **knobs}
    mem = mod.Memory(Toolkit(), kn)
    rng = random.Random(f"{seed}{knobs}")
    checked = 0
    for i in range(400):
        n = rng.choice([0, 1, 3, 6, 12, 25])
        text = " ".join(rng.choice(WORDS) for _ in range(n)) if n else "ok !"
        if i % 5 == 0 and mem.records:  # a repeated turn: equal scores, where tie order matters
            text = rng.choice(mem.records)["text"].partition(": ")[2]
        mem.write({"id": f"e{i}", "speaker": rng.choice(["Ana", "Ben", ""]), "session": str(i // 40), "text": text})
        if i == 150:
            mem.manage("session_end")
        if i % 9 == 0:
            query = " ".join(rng.choice(WORDS + ["zzunknown"]) for _ in range(rng.randint(1, 6)))
            mod.index(mem.records, mem.state, None, kn)
            got = mod.retrieve({"question": query}, mem.records, mem.state, None, kn)
            assert got == reference_hits(mod, mem.records, query, kn), (i, query)  # ids and scores, to the bit
            checked += bool(got)
    assert checked > 20


def test_a_turn_does_not_rebuild_the_index():
    """After the first read, a write adds one document's postings: the index object stays the same."""
    mod = load_module(load_program("bm25").source)
    mem = mod.Memory(Toolkit(), {"top_k": 10, "k1": 1.5, "b": 0.75, "show_time": False, "fill": "skip"})
    for i in range(50):
        mem.write({"id": f"e{i}", "text": f"note {i} about kayaks"})
    mem.read({"question": "kayaks", "budget": 100})
    idx = mem.state["bm25"]
    mem.write({"id": "new", "text": "the kayak is red"})
    res = mem.read({"question": "red kayak", "budget": 100})
    assert mem.state["bm25"] is idx and idx["n"] == 51 and res["items"][0]["sources"] == ["new"]


@pytest.mark.parametrize("seed", ["bm25", "bm25_neighbors"])
def test_write_order_ties_keep_bm25s_scores_and_rank_equal_scores_oldest_first(seed):
    prog = load_program(seed)
    mod = load_module(prog.source)
    kn = {**{k: s.default for k, s in prog.knob_specs.items()}, "ties": "write_order", "top_k": 8}
    mem = mod.Memory(Toolkit(), kn)
    for i in range(120):  # every text three times: a sea of equal scores
        mem.write({"id": f"e{i}", "speaker": "Ana", "text": f"{WORDS[i % 40 % len(WORDS)]} and {WORDS[(i // 3) % len(WORDS)]}"})
    mod.index(mem.records, mem.state, None, kn)
    for query in ("cat kayak", "Lisbon", "violin marathon garden"):
        got = mod.retrieve({"question": query}, mem.records, mem.state, None, kn)
        ref = reference_hits(mod, mem.records, query, kn)
        assert [s for _, s in got] == [s for _, s in ref]  # bm25s's scores, rank by rank
        assert got == sorted(got, key=lambda h: (-h[1], h[0]))  # equal scores: oldest first
