"""The rerank_pack seed: each of its components fixes the failure class it targets, measured with the
real evaluator (inline sandbox, the real scorer) on small hand-built episodes that isolate the class,
plus the synthetic suite as a whole. No LLM anywhere; the paraphrase case needs the local sentence
model (the ``embed`` extra) and is skipped without it, the rest use the hashing embedder."""

from __future__ import annotations

import pytest

from mstar.embedders import HashingEmbedder, LocalSentenceEmbedder, local_model_available
from mstar.episodes import Episode, Event, Probe
from mstar.evaluate import EvalConfig, evaluate
from mstar.harness.knobs import parse_knobs, resolve
from mstar.harness.loader import load_module, load_program
from mstar.harness.smoke import smoke_test
from mstar.sandbox.inline import InlineBackend
from mstar.scoring.aggregate import summarize
from mstar.tasks.registry import get_task
from mstar.toolkit import Toolkit

INLINE = InlineBackend()  # our own seed: trusted, no sandbox needed


def hashing():
    return Toolkit(embed=HashingEmbedder(), embedder_name="hashing")


def score(episode, budget, toolkit=None, **knobs):
    """(evidence recall, results) of rerank_pack on ``episode`` with ``knobs`` over the defaults."""
    results = evaluate(load_program("rerank_pack"), [episode], INLINE, toolkit or hashing(), knobs or None,
                       EvalConfig(budget=budget, collect_dump=False))
    assert not any(r.failure for r in results), results[0].failure
    return summarize(results)["overall"]["evidence_recall"], results


def episode(turns, question, evidence, category="single-hop"):
    """One episode of (speaker, text) turns, a session per 8 turns, and one probe asked at the end."""
    events = [Event(id=f"e{i}", session=str(i // 8), time=f"2024-01-{1 + i // 8:02d}T10:00:00", speaker=sp, text=tx)
              for i, (sp, tx) in enumerate(turns)]
    probe = Probe(id="p0", question=question, time="2024-03-01T10:00:00", evidence=evidence, category=category)
    return Episode(id="hand", events=events, probes=[probe])


def test_seed_passes_the_validator_and_defaults_are_honest_whole_turns():
    program = load_program("rerank_pack")
    assert not program.needs_llm
    smoke_test(program, INLINE)
    ep = episode([("Ana", "I bought a blue kayak in Lisbon. It was cheap."), ("Ben", "Nice, a kayak!")],
                 "Where did Ana buy the kayak?", ["e0"])
    recall, results = score(ep, 200)
    assert recall == 1.0
    shown = results[0].probes[0]
    assert "e0" in shown.credited


# --- extractive sentence ranking: evidence diluted inside a long turn -------------------------------
FILLER = ("We talked about the weather for a while. Then the neighbours came over with some cake. "
          "The children played outside until it got dark. Later we cleaned the kitchen together. "
          "Everyone was tired but happy. My brother called to say hello. The garden needs some work soon. "
          "I should repaint the fence before the summer. ")


def long_turn_episode():
    turns = [("Ben", f"Lisbon is lovely in spring, {w}.") for w in ("really", "truly", "honestly", "surely")]
    turns += [("Ben", f"My {c} kayak is old.") for c in ("red", "green", "grey", "white")]
    turns += [("Cal", "Did you ever go paddling?"), ("Ana", FILLER + "I went to buy a blue kayak in Lisbon. " + FILLER)]
    turns += [("Cal", f"A blue kayak in Lisbon? {w}.") for w in ("Fun", "Odd", "Nice", "Wow", "Hm", "Cool", "Yes", "Sure")]
    return episode(turns, "Where did Ana buy the blue kayak in Lisbon?", ["e9"])


def test_sentence_ranking_recovers_evidence_diluted_in_a_long_turn():
    """Whole-turn BM25 ranks the long turn below short turns that repeat one query word each (length
    normalisation); scoring a turn by its best sentence ranks it first. The whole turn is shown."""
    ep = long_turn_episode()
    budget = 180  # the long turn (~150 tokens) fits, with little else
    without, _ = score(ep, budget, w_sent=0.0, window=0)
    with_sent, results = score(ep, budget, w_sent=0.5, window=0)
    assert without == 0.0 and with_sent == 1.0
    assert results[0].probes[0].credited == ["e9"]  # credited = its whole text was shown


# --- MMR: near-duplicate turns crowd out the other evidence of a multi-hop question -------------
def crowded_episode():
    turns = []
    for i in range(6):  # one pet told about again and again, in nearly the same words
        turns.append(("Ana", f"My pet parrot Kiwi, such a pet{'!' * (i + 1)}"))
        turns.append(("Ben", "Ha, that sounds noisy."))
    turns += [("Ana", "I also have a pet turtle named Shelly who lives in a tank by the window."), ("Ben", "Cute.")]
    turns += [("Ana", "And my pet rabbit Fluff sleeps all day long under the kitchen table."), ("Ben", "Lovely.")]
    turns += [("Cal", f"Weather talk {i}, nothing else.") for i in range(6)]
    return episode(turns, "Which pets does Ana have?", ["e0", "e12", "e14"], category="multi-hop")


def test_mmr_raises_multi_hop_recall_when_near_duplicates_crowd_the_budget():
    ep = crowded_episode()
    budget = 70  # room for about four turns
    plain, _ = score(ep, budget, mmr_lambda=1.0, window=0)
    diverse, results = score(ep, budget, mmr_lambda=0.5, window=0)
    assert plain <= 1 / 3 + 1e-9 < diverse
    assert {"e12", "e14"} <= set(results[0].probes[0].credited)


def test_mmr_redundancy_ignores_the_question_words():
    """Evidence turns of one question share its words: they must not count as duplicates of each other."""
    mod = load_module(load_program("rerank_pack").source)
    knobs = resolve(parse_knobs(mod.KNOBS), {"mmr_lambda": 0.3})
    records = [{"text": "Ana: my pet parrot", "sources": ["a"]}, {"text": "Ana: my pet turtle", "sources": ["b"]},
               {"text": "Ana: my pet parrot again", "sources": ["c"]}]
    order = mod.mmr_order([(0, 1.0), (2, 0.95), (1, 0.9)], records, {"question": "Which pets does Ana have?"},
                          hashing(), knobs)
    assert [i for i, _s in order] == [0, 1, 2]


# --- embedder rerank: paraphrased evidence -------------------------------------------------------
def paraphrase_episode():
    turns = [("Ana", t) for t in ("I went to the market on Sunday.", "My sister visited last week.",
                                   "Work has been busy lately.", "I adore my feline companion, she purrs all night.",
                                   "The train was late again.", "I painted the kitchen yellow.")]
    turns = [x for t in turns for x in (t, ("Ben", "Oh, I see."))]
    return episode(turns, "Does Ana have a cat?", ["e6"])


@pytest.mark.skipif(not local_model_available(), reason="needs the embed extra (all-MiniLM-L6-v2)")
def test_embedder_rerank_finds_paraphrased_evidence_with_the_local_sentence_model():
    """Only the speaker name is shared with the question, so every Ana turn ties lexically; the
    sentence model's cosine puts "feline companion" first for "cat"."""
    ep = paraphrase_episode()
    tk = Toolkit(embed=LocalSentenceEmbedder(), embedder_name="all-MiniLM-L6-v2")
    budget = 20  # one turn
    lexical, _ = score(ep, budget, tk, w_embed=0.0, window=0)
    reranked, _ = score(ep, budget, tk, w_embed=0.5, window=0)
    assert lexical == 0.0 and reranked == 1.0


def test_embedder_rerank_embeds_each_turn_once_within_the_episode_quota():
    """Many reads: the question and new candidates only (cached by text), far inside the embed caps."""
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return HashingEmbedder()(texts)

    mod = load_module(load_program("rerank_pack").source)
    knobs = resolve(parse_knobs(mod.KNOBS), {"w_embed": 0.5, "rerank_hashing": True})
    mem = mod.Memory(Toolkit(embed=counting), knobs)
    for i in range(300):
        mem.write({"id": f"e{i}", "session": str(i // 20), "speaker": "Ana", "text": f"kayak {i % 7} Lisbon {i}", "meta": {}})
    for r in range(50):
        mem.read({"id": f"q{r}", "question": f"kayak {r % 7} Lisbon", "time": None, "budget": 300})
    embedded = [t for c in calls for t in c]
    assert 50 < len(embedded) == len(set(embedded)) <= 300 + 7
    assert len(calls) <= 2 * 50


def test_the_hashing_stand_in_is_not_used_to_rerank_by_default():
    """Hashing vectors are bags of the same words BM25 already scored: at defaults no embed call is made
    and the ranking is the lexical one (w_embed 0); ``rerank_hashing`` turns it on."""
    calls = []

    def counting(texts):
        calls.append(list(texts))
        return HashingEmbedder()(texts)

    mod = load_module(load_program("rerank_pack").source)
    for opt_in in (False, True):
        knobs = resolve(parse_knobs(mod.KNOBS), {"rerank_hashing": opt_in})
        mem = mod.Memory(Toolkit(embed=counting, embedder_name="hashing"), knobs)
        for i in range(40):
            mem.write({"id": f"e{i}", "session": "1", "speaker": "Ana", "text": f"kayak {i % 5} Lisbon {i}", "meta": {}})
        got = mem.read({"id": "q", "question": "kayak 3 Lisbon", "time": None, "budget": 300})
        lexical = mod.Memory(Toolkit(embed=counting), resolve(parse_knobs(mod.KNOBS), {"w_embed": 0.0}))
        for i in range(40):
            lexical.write({"id": f"e{i}", "session": "1", "speaker": "Ana", "text": f"kayak {i % 5} Lisbon {i}", "meta": {}})
        if not opt_in:
            assert calls == [] and got == lexical.read({"id": "q", "question": "kayak 3 Lisbon", "time": None, "budget": 300})
    assert calls


# --- the suite as a whole ---------------------------------------------------------------------------
def test_on_the_synthetic_suite_it_recalls_at_least_what_bm25_does():
    eps = get_task("synthetic", episodes=6, events=300).episodes("test")
    got = {}
    for name in ("bm25", "rerank_pack"):
        res = evaluate(load_program(name), eps, INLINE, hashing(), None, EvalConfig(budget=1024, collect_dump=False))
        got[name] = summarize(res)["overall"]["evidence_recall"]
    assert got["rerank_pack"] >= got["bm25"], got


def test_a_variant_that_shows_only_the_best_sentence_earns_nothing():
    """The tempting cheat of sentence ranking: show the matching sentence instead of the whole turn
    (more turns fit the budget). Scoring credits only whole turns, so the cut variant scores 0 where the
    seed, showing the whole long turn, scores 1."""
    from mstar.harness.loader import from_source

    src = load_program("rerank_pack").source
    cut = src.replace('''def render(record, knobs):
''', '''def render(record, knobs):
    parts = [s for s in sentences(record["text"]) if "kayak" in s]
    if parts:
        return parts[0]
''')
    assert cut != src
    ep = long_turn_episode()
    results = evaluate(from_source(cut), [ep], INLINE, hashing(), {"w_sent": 0.5, "window": 0},
                       EvalConfig(budget=180, collect_dump=False))
    probe = results[0].probes[0]
    assert "e9" in probe.listed and probe.credited == [] and probe.evidence_recall == 0.0
    honest, _ = score(ep, 180, w_sent=0.5, window=0)
    assert honest == 1.0


def test_structural_moves_carry_each_component_into_another_seed_and_the_child_runs():
    """The components are transplantable: each move of a rerank_pack component into bm25_neighbors
    gives a program that passes the validator and scores the hand-built episodes."""
    import random

    from mstar.evolve.operators.base import OperatorContext, ParentView
    from mstar.evolve.operators.structural import StructuralOperator
    from mstar.harness.loader import from_source, seeds_dir

    parent = (seeds_dir() / "bm25_neighbors.py").read_text()
    donor = {"rerank_pack": (seeds_dir() / "rerank_pack.py").read_text()}
    moved = set()
    for s in range(60):
        child = StructuralOperator().propose([ParentView(id="p", name="bm25_neighbors", source=parent)],
                                             OperatorContext(rng=random.Random(s), seeds=donor))
        comps = {c for c in ("index", "retrieve", "pack") if f"{c} <- rerank_pack.{c}" in child.note}
        if not comps - moved:
            continue
        moved |= comps
        program = from_source(child.source)
        smoke_test(program, INLINE)
        res = evaluate(program, [crowded_episode()], INLINE, hashing(), None, EvalConfig(budget=1024, collect_dump=False))
        assert not res[0].failure and summarize(res)["overall"]["evidence_recall"] > 0, child.note
        if moved == {"index", "retrieve", "pack"}:
            break
    assert {"retrieve", "pack"} <= moved, moved


def test_long_neighbours_are_left_out_under_neighbor_max_words():
    """A hit's long neighbour (an assistant essay) spends the budget a second hit would use."""
    essay = " ".join(["words"] * 150)
    turns = [("Ana", "I keep my kayak in Lisbon."), ("Bot", essay), ("Cal", "ok"), ("Cal", "ok"),
             ("Ana", "My other kayak stays in Porto."), ("Bot", essay)]
    ep = episode(turns, "Where are Ana's kayaks?", ["e0", "e4"], category="multi-hop")
    budget = 165  # one hit and its essay neighbour fit (~161 tokens); the second hit then does not
    wide, _ = score(ep, budget, window=1)
    capped, results = score(ep, budget, window=1, neighbor_max_words=60)
    assert wide == 0.5 and capped == 1.0
    assert "e1" not in results[0].probes[0].listed


def test_an_answer_is_found_by_the_words_of_the_question_before_it():
    """The answer turn shares no content word with the probe; the turn before it (the question it
    answers) does. With ``prev_key_words`` the answer is indexed with those words and ranks first."""
    turns = [("Ben", "What genre is your first screenplay?"), ("Ana", "A mix of drama and romance!")]
    turns += [("Cal", f"Talk {i} about lunch.") for i in range(6)]
    turns += [("Ben", f"I read a screenplay {w}.") for w in ("yesterday", "today", "on Monday", "at work")]
    ep = episode(turns, "What genre is Ana's first screenplay?", ["e1"])
    budget = 14  # one short turn
    # (w_sent 0: the best-sentence score sees each turn's own sentences only, where the question wins)
    off, _ = score(ep, budget, prev_key_words=0, window=0, w_sent=0.0)
    on, _ = score(ep, budget, prev_key_words=100, window=0, w_sent=0.0)
    assert off == 0.0 and on == 1.0
