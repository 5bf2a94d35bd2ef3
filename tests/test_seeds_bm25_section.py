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
         "rerank_pack": ["bm25", "rp_sent", "rp_vecs"],
         "amem": ["bm25"], "hipporag": ["hr_bm25"], "memorybank": ["bm25"], "session_hierarchy": ["sh_turn_index"],
         "lexical_plus": ["lp_bm25", "lp_sess"]}
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


SNAP_START, SNAP_END = "# --- snapshot: the driver's state as JSON data", "# --- end of the snapshot section ---"


def test_every_copy_of_the_snapshot_section_is_identical():
    holders = sorted(p.stem for p in seeds_dir().glob("*.py") if SNAP_START in p.read_text())
    assert holders == sorted(SEEDS)
    texts = {}
    for name in holders:
        src = (seeds_dir() / f"{name}.py").read_text()
        texts[name] = src[src.index(SNAP_START):src.index(SNAP_END)]
    assert len(set(texts.values())) == 1, "the snapshot sections differ"


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_a_memory_loaded_from_its_snapshot_goes_on_exactly_like_the_original(seed):
    """save_state -> JSON -> load_state in a new Memory: same answers after more writes, and the loaded
    incremental index is extended, not rebuilt (it still holds the same record list)."""
    import json

    prog = load_program(seed)
    mod = load_module(prog.source)
    knobs = {k: s.default for k, s in prog.knob_specs.items()}
    orig = mod.Memory(Toolkit(), knobs)
    evs = events(seed, 200)
    for i, ev in enumerate(evs[:120]):
        orig.write(dict(ev))
        if i == 60:
            orig.manage("session_end")
        if i % 10 == 0:
            orig.read({"question": "kayak Lisbon", "budget": 200, "time": "2023-02-01T00:00:00"})
    loaded = mod.Memory(Toolkit(), knobs)
    loaded.load_state(json.loads(json.dumps(orig.save_state())))
    key = SEEDS[seed][0]
    assert (loaded.state.get(key) or {}).get("records", loaded.records) is loaded.records
    rng = random.Random(seed)
    for i, ev in enumerate(evs[120:]):
        orig.write(dict(ev))
        loaded.write(dict(ev))
        if i % 5 == 0:
            q = {"question": " ".join(rng.choice(WORDS) for _ in range(3)), "budget": 300, "time": "2023-03-01T00:00:00"}
            assert loaded.read(dict(q)) == orig.read(dict(q)), (seed, i)
    if key in loaded.state and "n" in loaded.state[key]:
        assert loaded.state[key]["n"] > 0 and loaded.state[key]["records"] is loaded.records


def test_a_state_that_is_not_data_is_refused_with_a_type_error():
    mod = load_module(load_program("bm25").source)
    mem = mod.Memory(Toolkit(), {k: s.default for k, s in load_program("bm25").knob_specs.items()})
    mem.write({"id": "e1", "text": "hello kayak"})
    mem.state["handle"] = object()
    with pytest.raises(TypeError, match="object"):
        mem.save_state()


@pytest.mark.parametrize("donor", ["longmemeval_rag", "hybrid", "memorybank"])
def test_a_transplanted_lexical_retrieval_stays_incremental(donor):
    """The structural operator moves a donor's index + retrieve into bm25_neighbors: the child shares the
    parent's identical bm25 section (nothing renamed or duplicated), keeps its index across a turn,
    and answers as with an index rebuilt before each read."""
    from mstar.evolve.operators.base import OperatorContext, ParentView
    from mstar.evolve.operators.structural import StructuralOperator

    parent = (seeds_dir() / "bm25_neighbors.py").read_text()
    seeds = {donor: (seeds_dir() / f"{donor}.py").read_text()}
    for s in range(40):
        ctx = OperatorContext(rng=random.Random(s), seeds=seeds)
        child = StructuralOperator().propose([ParentView(id="p", name="bm25_neighbors", source=parent)], ctx)
        if f"retrieve <- {donor}.retrieve" in child.note:  # its index comes along, or is the same
            break
    else:
        pytest.fail(f"no retrieve move from {donor} in 40 tries")
    assert child.source.count("def bm25_put(") == 1 and "bm25_put_" not in child.source, child.note
    mod = load_module(child.source)
    from mstar.harness.loader import from_source

    knobs = {k: s.default for k, s in from_source(child.source).knob_specs.items()}
    inc, ref = mod.Memory(Toolkit(), knobs), mod.Memory(Toolkit(), dict(knobs))
    key = SEEDS[donor][0]
    rng = random.Random(donor)
    for i, ev in enumerate(events(donor, 120)):
        inc.write(dict(ev))
        ref.write(dict(ev))
        if i % 6 == 0:
            before = inc.state.get(key)
            q = {"question": " ".join(rng.choice(WORDS) for _ in range(3)), "budget": 300, "time": "2023-03-01T00:00:00"}
            ref.state.pop(key, None)
            ref.dirty = True
            assert inc.read(dict(q)) == ref.read(dict(q)), (donor, i)
            assert before is None or inc.state[key] is before  # extended in place, not rebuilt


def test_records_json_would_change_are_coded_and_come_back_the_same():
    """A tuple or an int-keyed dict in a record would come back as a list / str keys through plain JSON."""
    import json

    prog = load_program("bm25")
    mod = load_module(prog.source)
    mem = mod.Memory(Toolkit(), {k: s.default for k, s in prog.knob_specs.items()})
    mem.write({"id": "e1", "text": "kayak in Lisbon"})
    mem.records[0]["pair"], mem.records[0]["by_id"] = (1, 2), {3: "x"}
    saved = json.loads(json.dumps(mem.save_state()))
    assert "coded" in saved["records"]
    loaded = mod.Memory(Toolkit(), mem.knobs)
    loaded.load_state(saved)
    assert loaded.records == mem.records and loaded.records[0]["pair"] == (1, 2)
