"""The incremental BM25 section shared by the lexical seeds: one implementation, copied identically.

Each harness is one standalone file, so the section is a copy in each seed that has a lexical index.
Checked here: the copies are identical; the section scores and ranks as a bm25s index built from
scratch (appends, in-place replacements, equal scores); and every seed answers the same with its
incremental index as with an index rebuilt from nothing before each read, over interleaved writes,
reads and a manage(). (The seed tables before and after the change are in docs/BENCHMARKS.md.)
"""

from __future__ import annotations

import copy
import random

import bm25s
import pytest

from mstar.harness.loader import load_module, load_program, seeds_dir
from mstar.toolkit import Toolkit

START, END = "# --- bm25: an incremental Okapi BM25 index", "# --- end of the bm25 section ---"
# seed -> the state keys of its incremental indexes (dropped in the twin to force a rebuild).
SEEDS = {"bm25": ["bm25"], "bm25_neighbors": ["bm25"], "longmemeval_rag": ["lme"], "hybrid": ["bm25", "dense_rows"],
         "amem": ["bm25"], "hipporag": ["hr_bm25"], "memorybank": ["bm25"], "session_hierarchy": ["sh_turn_index"]}
WORDS = ("cat kayak Lisbon violin marathon garden Miso sister parrot Reykjavik blue red green tent piano "
         "novel camera puppy bike Oslo Kyoto ran bought saw loved painted").split()


def section(name: str) -> str:
    src = (seeds_dir() / f"{name}.py").read_text()
    assert src.count(START) == 1 and src.count(END) == 1, name
    return src[src.index(START):src.index(END)]


def test_every_copy_of_the_bm25_section_is_identical_and_no_seed_rebuilds_with_bm25s():
    holders = sorted(p.stem for p in seeds_dir().glob("*.py") if START in p.read_text())
    assert holders == sorted([*SEEDS, "mem_alpha"])
    ref = section("bm25")
    for name in holders:
        assert section(name) == ref, f"{name}: its bm25 section differs from bm25.py's"
    for p in seeds_dir().glob("*.py"):
        assert "import bm25s" not in p.read_text(), f"{p.name} still rebuilds a bm25s index"


def fresh_bm25s(docs, q, k, k1, b):
    r = bm25s.BM25(k1=k1, b=b)
    r.index([d or [""] for d in docs], show_progress=False)
    ids, scores = r.retrieve([q], k=min(k, len(docs)), show_progress=False)
    return [(int(d), float(s)) for d, s in zip(ids[0], scores[0], strict=True) if s > 0]


@pytest.mark.parametrize("k1,b,k", [(1.5, 0.75, 10), (0.7, 0.2, 3), (2.9, 1.0, 500)])
def test_section_appends_and_replacements_score_as_a_fresh_bm25s_index(k1, b, k):
    mod = load_module(load_program("bm25").source)
    rng = random.Random(f"{k1}{b}{k}")
    idx, docs, checked = mod.bm25_new(), [], 0
    for i in range(300):
        toks = [rng.choice(WORDS).lower() for _ in range(rng.choice([0, 1, 2, 4, 9]))]
        if docs and i % 7 == 0:  # replace a document in place (a round that grew, an updated entry)
            d = rng.randrange(len(docs))
            mod.bm25_put(idx, d, toks, docs[d])
            docs[d] = toks
        else:
            if docs and i % 4 == 0:  # a repeated document: equal scores, where tie order matters
                toks = list(rng.choice(docs))
            mod.bm25_put(idx, len(docs), toks)
            docs.append(toks)
        if i % 5 == 0:
            q = [rng.choice(WORDS + ["zzunknown"]).lower() for _ in range(rng.randint(1, 5))]
            got = mod.bm25_top(idx, q, k, k1, b)
            assert got == fresh_bm25s(docs, q, k, k1, b), (i, q)  # ids and scores, to the bit
            checked += bool(got)
    assert checked > 20


def events(seed: str, n: int):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.choice([0, 1, 3, 6, 12])
        text = " ".join(rng.choice(WORDS) for _ in range(words)) if words else "ok !"
        if i % 5 == 0 and out:
            text = rng.choice(out)["text"]
        out.append({"id": f"e{i}", "speaker": rng.choice(["Ana", "Ben"]), "session": str(i // 30),
                    "time": f"2023-0{1 + i // 60}-{1 + (i // 3) % 28:02d}T10:00:00", "text": text})
    return out


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_incremental_index_answers_as_one_rebuilt_before_every_read(seed):
    """Twin memories get the same writes, reads and manage(); the twin drops its index before each read."""
    prog = load_program(seed)
    mod = load_module(prog.source)
    knobs = {k: s.default for k, s in prog.knob_specs.items()}
    inc, ref = mod.Memory(Toolkit(), knobs), mod.Memory(Toolkit(), copy.deepcopy(knobs))
    rng = random.Random(seed)
    compared = 0
    for i, ev in enumerate(events(seed, 240)):
        inc.write(dict(ev))
        ref.write(dict(ev))
        if i in (90, 180):
            inc.manage("session_end")
            ref.manage("session_end")
        if i % 4 == 0:
            q = {"question": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))), "budget": 300,
                 "time": "2023-03-01T00:00:00"}
            for key in SEEDS[seed]:
                ref.state.pop(key, None)
            ref.dirty = True
            got, want = inc.read(dict(q)), ref.read(dict(q))
            assert got == want, (seed, i, q["question"])
            compared += bool(got["items"])
    assert compared > 20


def test_mem_alpha_index_follows_inserts_updates_and_deletes():
    """mem_alpha's entries change by operations (no LLM needed to apply them): search equals bm25s."""
    mod = load_module(load_program("mem_alpha").source)
    knobs = {k: s.default for k, s in load_program("mem_alpha").knob_specs.items()}
    mem = mod.Memory(Toolkit(), knobs)
    rng = random.Random(7)
    checked = 0
    for i in range(200):
        store = rng.choice(["episodic", "semantic"])
        ids = list(mem.entries[store])
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        op = {"op": "insert", "store": store, "text": text}
        if ids and i % 6 == 0:
            op = {"op": "update", "store": store, "id": rng.choice(ids), "text": text}
        elif ids and i % 11 == 0:
            op = {"op": "delete", "store": store, "id": rng.choice(ids)}
        mem.apply(op, [f"e{i}"], None)
        if i % 3 == 0:
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
            got = [(s, eid) for s, eid, _e in mem.search(q, knobs["top_k"])]
            flat = [(s, eid, e) for s in mod.STORES for eid, e in mem.entries[s].items()]
            want = [(flat[d][0], flat[d][1])
                    for d, _s in fresh_bm25s([mod.terms(e["text"]) for *_x, e in flat], mod.terms(q), knobs["top_k"],
                                             1.5, 0.75)]
            assert got == want, (i, q)
            checked += bool(got)
    assert checked > 20
