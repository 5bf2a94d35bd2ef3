"""The offline scoring rules of docs/ARCHITECTURE.md#scoring (see docs/SCORING.md)."""

import pytest

from mstar.episodes import Episode, Event, Probe
from mstar.evaluate import evaluate_episode
from mstar.harness.contract import ReadResult
from mstar.harness.loader import from_source
from mstar.sandbox.inline import InlineBackend
from mstar.scoring.aggregate import summarize
from mstar.scoring.evidence import EventIndex, score_read
from mstar.toolkit import Toolkit

EVENTS = [
    Event(id="D1:1", session="1", speaker="Ana", text="I adopted a grey cat called Miso last week."),
    Event(id="D1:2", session="1", speaker="Ben", text="My sister Carla works as a nurse in Porto."),
    Event(id="D2:1", session="2", speaker="Ana", text="Yes!"),
    Event(id="D2:2", session="2", speaker="Ben", text="Carla's husband coaches the junior football team."),
]
INDEX = EventIndex.of(EVENTS)


def probe(evidence, answer=None, **kw):
    return Probe(id="q", question="?", evidence=evidence, answer=answer, **kw)


def read(*items, context=None):
    items = [{"text": t, "sources": s} for t, s in items]
    return ReadResult.model_validate({"context": context if context is not None else "\n".join(i["text"] for i in items), "items": items})


def test_item_that_carries_the_turn_is_credited():
    s = score_read(probe(["D1:2"]), read(("Ben: My sister Carla works as a nurse in Porto.", ["D1:2"])), INDEX, 100)
    assert s.evidence_recall == 1.0 and s.ndcg == 1.0 and s.credited == ["D1:2"]


def test_listing_every_id_in_one_short_string_scores_about_zero():
    all_ids = [e.id for e in EVENTS]
    s = score_read(probe(["D1:1", "D1:2", "D2:2"]), read(("everything", all_ids)), INDEX, 100)
    assert s.evidence_recall == 0.0 and s.ndcg == 0.0


def test_wrong_id_with_right_text_is_not_credited():
    s = score_read(probe(["D1:2"]), read(("Ben: My sister Carla works as a nurse in Porto.", ["D1:1"])), INDEX, 100)
    assert s.evidence_recall == 0.0


def test_item_not_shown_in_context_does_not_count():
    r = read(("Ben: My sister Carla works as a nurse in Porto.", ["D1:2"]), context="something else entirely")
    assert score_read(probe(["D1:2"]), r, INDEX, 100).evidence_recall == 0.0


LONG = Event(id="D3:1", session="3", speaker="Ana",
             text="On Sunday we walked the whole coastal trail from the old lighthouse to the fishing harbour "
                  "and back, twenty two kilometres in the rain.")
INDEX_L = EventIndex.of([*EVENTS, LONG])


def test_in_order_span_with_small_edits_is_credited_and_bags_are_not():
    words = LONG.text.replace(",", "").replace(".", "").split()  # 24 word tokens: 1 edit allowed (5 %)
    assert len(words) == 24
    dropped_one = " ".join(w for i, w in enumerate(words) if i != 3)
    dropped_two = " ".join(w for i, w in enumerate(words) if i not in (3, 11))
    reversed_ = " ".join(reversed(words))
    bag = " ".join(sorted(set(w.lower() for w in words)))
    first_60 = " ".join(words[: int(0.6 * len(words))])
    for text, want in ((dropped_one, 1.0), (dropped_two, 0.0), (reversed_, 0.0), (bag, 0.0), (first_60, 0.0)):
        assert score_read(probe(["D3:1"]), read((text, ["D3:1"])), INDEX_L, 100).evidence_recall == want, text


def test_braided_turns_are_not_credited():
    a, b = LONG.text.split(), EVENTS[1].text.split()
    braid = " ".join(x for pair in zip(a, b + [""] * len(a), strict=False) for x in pair if x)
    s = score_read(probe(["D3:1", "D1:2"]), read((braid, ["D3:1", "D1:2"])), INDEX_L, 100)
    assert s.evidence_recall == 0.0


def test_short_events_must_match_exactly():
    # Under 10 word tokens no edit is allowed: one word off is a miss.
    assert score_read(probe(["D1:2"]), read(("My sister Carla works as a nurse in Lisbon.", ["D1:2"])), INDEX, 100).evidence_recall == 0.0
    assert score_read(probe(["D1:2"]), read(("my SISTER carla -- works as a nurse, in porto", ["D1:2"])), INDEX, 100).evidence_recall == 1.0


def test_event_without_word_tokens_must_appear_verbatim():
    ev = Event(id="D4:1", session="4", speaker="Ana", text="?!")
    idx = EventIndex.of([*EVENTS, ev])
    assert score_read(probe(["D4:1"]), read(("Ana: ?!", ["D4:1"])), idx, 100).evidence_recall == 1.0
    assert score_read(probe(["D4:1"]), read(("Ana: !?", ["D4:1"])), idx, 100).evidence_recall == 0.0


def test_summary_carrying_the_answer_is_not_credited():
    s = score_read(probe(["D1:1"], answer="Miso"), read(("Ana has a pet named Miso", ["D1:1"])), INDEX, 100)
    assert s.evidence_recall == 0.0 and s.answer_containment == 1.0


def test_one_shown_copy_credits_one_event():
    twin = Event(id="D5:1", session="5", speaker="Ben", text=EVENTS[1].text)  # a second turn with the same words
    idx = EventIndex.of([*EVENTS, twin])
    text = EVENTS[1].text
    one_item_two_ids = score_read(probe(["D1:2", "D5:1"]), read((text, ["D1:2", "D5:1"])), idx, 100)
    assert one_item_two_ids.evidence_recall == 0.5
    # Two items with the same text but only one copy in the context: the second item is not shown.
    dup_items = read((text, ["D1:2"]), (text, ["D5:1"]), context=text)
    assert score_read(probe(["D1:2", "D5:1"]), dup_items, idx, 100).evidence_recall == 0.5
    # Two copies shown: both credited.
    assert score_read(probe(["D1:2", "D5:1"]), read((text, ["D1:2"]), (text, ["D5:1"])), idx, 100).evidence_recall == 1.0


def test_item_inside_another_item_cannot_reuse_its_tokens():
    whole = EVENTS[1].text + " " + EVENTS[3].text
    r = read((whole, ["D1:2"]), (EVENTS[1].text, ["D1:2"]), (EVENTS[3].text, ["D2:2"]), context=whole)
    s = score_read(probe(["D1:2", "D2:2"]), r, INDEX, 100)
    assert s.credited == ["D1:2", "D2:2"]  # each still has its own unclaimed span
    r2 = read((whole, ["D1:2", "D2:2"]), (EVENTS[3].text, ["D2:2"]), context=whole)
    assert score_read(probe(["D1:2", "D2:2"]), r2, INDEX, 100).evidence_recall == 1.0
    # A short event inside a longer credited one is not credited by the same tokens.
    short = Event(id="D6:1", session="6", speaker="Ben", text="works as a nurse")
    idx = EventIndex.of([*EVENTS, short])
    s3 = score_read(probe(["D1:2", "D6:1"]), read((EVENTS[1].text, ["D6:1", "D1:2"])), idx, 100)
    assert s3.credited == ["D1:2"]


def test_fat_token_context_is_over_budget_in_characters():
    fat = "x" * 20_000
    s = score_read(probe(["D1:2"]), read((EVENTS[1].text + " " + fat, ["D1:2"])), INDEX, 1024)
    assert s.context_tokens < 1024 and s.error and "characters" in s.error and s.evidence_recall == 0.0


def test_hostile_item_listing_many_near_matches_is_bounded():
    import time

    many = [Event(id=f"N:{i}", session="9", speaker="x", text=LONG.text.replace("twenty", f"w{i}")) for i in range(3000)]
    idx = EventIndex.of(many)
    t0 = time.perf_counter()
    s = score_read(probe([e.id for e in many]), read((LONG.text, [e.id for e in many])), idx, 1024)
    assert time.perf_counter() - t0 < 30  # generous: a bound, not a benchmark
    assert len(s.credited) == 1


def test_over_budget_context_is_an_error_not_truncated():
    text = "Ben: My sister Carla works as a nurse in Porto."
    s = score_read(probe(["D1:2"], answer="nurse"), read((text, ["D1:2"])), INDEX, 5)
    assert s.error and s.error.startswith("over_budget") and s.evidence_recall == 0.0 and s.answer_containment == 0.0


def test_ndcg_rewards_rank_and_recall_counts_each_event_once():
    good = ("Ben: Carla's husband coaches the junior football team.", ["D2:2"])
    other = ("Ana: I adopted a grey cat called Miso last week.", ["D1:1"])
    first = score_read(probe(["D2:2"]), read(good, other), INDEX, 100)
    second = score_read(probe(["D2:2"]), read(other, good), INDEX, 100)
    assert first.ndcg == 1.0 and second.ndcg == pytest.approx(1 / 1.5849625, rel=1e-6)
    dup = score_read(probe(["D2:2", "D1:2"]), read(good, good), INDEX, 100)
    assert dup.evidence_recall == 0.5


def test_answer_containment_is_whole_word():
    r = read(("the year was 2023", []))
    assert score_read(probe([], answer="2023"), r, INDEX, 100).answer_containment == 1.0
    assert score_read(probe([], answer="202"), r, INDEX, 100).answer_containment == 0.0


def test_abstention_probes_are_left_out_of_recall():
    s = score_read(probe([], answer="not mentioned", abstention=True), read(("x", [])), INDEX, 100)
    assert s.evidence_recall is None and s.ndcg is None


def test_session_recall():
    p = probe(["D2:2"], evidence_sessions=["1", "2"])
    s = score_read(p, read(("Ben: Carla's husband coaches the junior football team.", ["D2:2"])), INDEX, 100)
    assert s.session_recall == 0.5


CHEAT = '''
INSTRUCTIONS = "x"
KNOBS = {}
class Memory:
    def __init__(self, toolkit, knobs):
        self.ids = []
    def write(self, event):
        self.ids.append(event["id"])
    def read(self, query):
        return {"context": "memory", "items": [{"text": "memory", "sources": list(self.ids)}]}
'''

OVER = CHEAT.replace('"context": "memory", "items": [{"text": "memory"', '"context": "word " * 5000, "items": [{"text": "word"')


def test_cheating_and_over_budget_harnesses_end_to_end():
    ep = Episode(id="e", events=EVENTS, probes=[probe(["D1:2"], answer="nurse"), Probe(id="q2", question="?", evidence=["D2:2"])])
    for src, err in ((CHEAT, None), (OVER, "over_budget")):
        res = evaluate_episode(from_source(src), ep, InlineBackend(), Toolkit(), config=None)
        summary = summarize([res])["overall"]
        assert summary["evidence_recall"] == 0.0
        if err:
            assert summary["errors"] == 2 and all(p.error.startswith(err) for p in res.probes)


def test_crashing_harness_fails_the_episode_with_reason_and_scores_zero():
    crash = CHEAT.replace('self.ids.append(event["id"])', 'raise ValueError("bad write")')
    ep = Episode(id="e", events=EVENTS, probes=[probe(["D1:2"])])
    res = evaluate_episode(from_source(crash), ep, InlineBackend(), Toolkit())
    assert res.failure[0] == "crash" and "bad write" in res.failure[1]
    assert res.probes[0].evidence_recall == 0.0 and res.probes[0].error.startswith("crash")


def test_manage_is_called_at_each_session_end_and_probes_at_their_position():
    log_src = '''
INSTRUCTIONS = "x"
KNOBS = {}
class Memory:
    def __init__(self, toolkit, knobs):
        self.log = []
    def write(self, event):
        self.log.append("w" + event["id"])
    def manage(self, phase):
        self.log.append(phase)
    def read(self, query):
        return {"context": "log", "items": [{"text": "log", "sources": list(self.log)}]}
    def dump(self):
        return [{"text": x, "sources": []} for x in self.log]
'''
    probes = [Probe(id="mid", question="?", position=2), Probe(id="end", question="?")]
    ep = Episode(id="e", events=EVENTS, probes=probes)
    res = evaluate_episode(from_source(log_src), ep, InlineBackend(), Toolkit())
    assert res.failure is None and len(res.write_ms) == 4 and len(res.manage_ms) == 2
    # What the harness had seen at each read comes back through the sources it listed.
    mid, end = res.probes
    assert (mid.probe_id, end.probe_id) == ("mid", "end")
    assert set(mid.listed) == {"wD1:1", "wD1:2", "session_end"}
    assert [r["text"] for r in res.dump] == ["wD1:1", "wD1:2", "session_end", "wD2:1", "wD2:2", "session_end"]


def test_an_item_cut_out_of_a_word_shows_no_word():
    ev = Event(id="D7:1", session="7", speaker="Ana", text="Porto")
    idx = EventIndex.of([*EVENTS, ev])
    # The item "Porto" occurs only inside "XPortoY": the context shows no word "Porto".
    r = read(("Porto", ["D7:1"]), context="we flew to XPortoY yesterday")
    assert score_read(probe(["D7:1"]), r, idx, 100).evidence_recall == 0.0
    r2 = read(("Porto", ["D7:1"]), context="we flew to Porto, yesterday")
    assert score_read(probe(["D7:1"]), r2, idx, 100).evidence_recall == 1.0


def test_many_overlapping_items_listing_many_ids_are_bounded():
    """Thousands of distinct items (prefixes of one long context), each listing 300 evidence ids whose
    texts share its words but not their order: the scan budget stops the work, nothing is credited."""
    import random
    import time

    vocab = [f"w{i}" for i in range(50)]
    rng = random.Random(1)
    words = [rng.choice(vocab) for _ in range(1500)]
    context = " ".join(words)
    events = [Event(id=f"E:{i}", session="1", speaker="x", text=" ".join(rng.sample(vocab, 20))) for i in range(300)]
    idx = EventIndex.of(events)
    ids = [e.id for e in events]
    items = [{"text": " ".join(words[: 200 + i]), "sources": ids} for i in range(0, 1300, 1)]
    r = ReadResult.model_validate({"context": context, "items": items})
    t0 = time.perf_counter()
    s = score_read(probe(ids), r, idx, 4000)
    assert time.perf_counter() - t0 < 60  # a bound against a hang, not a benchmark
    assert s.evidence_recall < 0.05
