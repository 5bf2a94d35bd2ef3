"""The synthetic suite: determinism, sizes, probe categories and evidence, splits, options."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date

import pytest

from mstar.errors import UsageError
from mstar.harness.contract import ReadResult
from mstar.scoring.evidence import EventIndex, score_read
from mstar.tasks import synthetic_vocab as V
from mstar.tasks.registry import get_task
from mstar.tasks.synthetic import SyntheticTask
from mstar.tasks.synthetic_gen import ATTRS, CATEGORIES

_FIELD = re.compile(r"\\\{(\w+)\\\}")


def _regex(template: str) -> re.Pattern[str]:
    """A fact template as a regex; the subject slot {s} is captured."""
    body = _FIELD.sub(lambda m: "(?P<s>.+?)" if m.group(1) == "s" else ".+?", re.escape(template))
    return re.compile(f"^{body}$", re.IGNORECASE)


FACT_RE = {a: ([_regex(t) for t in V.SELF[a] + V.SELF_UPDATE[a]], [_regex(t) for t in V.OTHER[a] + V.OTHER_UPDATE[a]])
           for a in ATTRS}
QUESTION_RE = {a: [_regex(t) for t in V.QUESTION[a] + V.QUESTION_NOW[a]] for a in ATTRS}


def states(event, subject: str, attr: str) -> bool:
    """Does ``event`` state (or update) ``attr`` of ``subject``, by the suite's fact templates?"""
    own, other = FACT_RE[attr]
    if event.speaker == subject and any(r.match(event.text) for r in own):
        return True
    return any((m := r.match(event.text)) and m.group("s") == subject for r in other)


def parse_question(question: str) -> tuple[str, str]:
    for attr, regs in QUESTION_RE.items():
        for r in regs:
            if m := r.match(question):
                return m.group("s"), attr
    raise AssertionError(f"not a known question form: {question}")


@pytest.fixture(scope="module")
def suite() -> SyntheticTask:
    return SyntheticTask(seed=3, episodes=6, events=400, probes=50)


def test_same_seed_same_episodes_other_seed_differs():
    a = SyntheticTask(seed=7, episodes=3, events=200).episodes()
    b = SyntheticTask(seed=7, episodes=3, events=200).episodes()
    c = SyntheticTask(seed=8, episodes=3, events=200).episodes()
    assert [e.model_dump() for e in a] == [e.model_dump() for e in b]
    assert [ev.text for ev in a[0].events] != [ev.text for ev in c[0].events]
    assert [p.question for p in a[0].probes] != [p.question for p in c[0].probes]


def test_an_episode_does_not_depend_on_how_many_are_generated():
    few = SyntheticTask(seed=1, episodes=2, events=150).episodes()
    many = SyntheticTask(seed=1, episodes=9, events=150).episodes()
    assert few[1].model_dump() == many[1].model_dump()


@pytest.mark.parametrize("episodes, events", [(1, 10), (2, 37), (3, 1000), (1, 20_000)])
def test_sizes(episodes, events):
    eps = SyntheticTask(episodes=episodes, events=events).episodes()
    assert len(eps) == episodes and all(len(e.events) == events for e in eps)
    for e in eps:
        ids = [ev.id for ev in e.events]
        assert len(set(ids)) == len(ids)
        times = [ev.time for ev in e.events]
        assert times == sorted(times)  # one stream, in time order
        assert len(e.probes) <= 40 and len({p.id for p in e.probes}) == len(e.probes)


def test_defaults_fit_the_main_job():
    eps = SyntheticTask().episodes()
    assert len(eps) == 12 and {len(e.events) for e in eps} == {300}
    assert len(SyntheticTask().episodes("test")) >= 2


def test_every_category_with_evidence_that_exists(suite):
    for ep in suite.episodes():
        by_id = {ev.id: ev for ev in ep.events}
        assert {p.category for p in ep.probes} == set(CATEGORIES)
        for p in ep.probes:
            assert p.abstention == (p.category == "abstention")
            if p.abstention:
                assert p.evidence == [] and p.answer is None and not p.scored_for_recall
                continue
            assert p.evidence and all(e in by_id for e in p.evidence)
            assert len(p.evidence) == (2 if p.category == "multi-hop" else 1)
            # the gold answer is stated by the (last) evidence event
            assert p.answer.lower() in by_id[p.evidence[-1]].text.lower(), (p, by_id[p.evidence[-1]])


def test_a_perfect_read_of_the_evidence_scores_full_recall_and_a_wrong_one_does_not(suite):
    """The real scorer, given a read of exactly the evidence events, credits all of them."""
    for ep in suite.episodes("test"):
        index = EventIndex.of(ep.events)
        by_id = {ev.id: ev for ev in ep.events}
        for p in ep.probes:
            if not p.scored_for_recall:
                continue
            items = [{"text": f"{by_id[e].speaker}: {by_id[e].text}", "sources": [e]} for e in p.evidence]
            good = ReadResult(context="\n".join(i["text"] for i in items), items=items)
            assert score_read(p, good, index, 1024).evidence_recall == 1.0, p
            # the same ids over texts of other events (without the gold answer) carry nothing
            other = [ev for ev in ep.events if ev.id not in p.evidence and p.answer.lower() not in ev.text.lower()][:3]
            bad_items = [{"text": ev.text, "sources": list(p.evidence)} for ev in other]
            bad = ReadResult(context="\n".join(i["text"] for i in bad_items), items=bad_items)
            assert score_read(p, bad, index, 1024).evidence_recall < 1.0


def test_temporal_evidence_carries_no_date_and_the_date_picks_one_of_several(suite):
    ambiguous_by_name = 0
    for ep in suite.episodes():
        by_id = {ev.id: ev for ev in ep.events}
        for p in (p for p in ep.probes if p.category == "temporal"):
            ev = by_id[p.evidence[0]]
            day = date.fromisoformat(ev.time[:10])
            long = f"{day:%B} {day.day}, {day.year}"
            assert day.isoformat() in p.question or long in p.question, (p.question, ev.time)
            assert ev.speaker in p.question
            for needle in (day.isoformat(), str(day.year), f"{day:%B}", f"{day:%m}/{day:%d}"):
                assert needle not in ev.text
            # the same speaker did other things on other days: the date is what singles this one out
            others = [e for e in ep.events if e.speaker == ev.speaker and e.id != ev.id
                      and any(tail in e.text.lower() for _, tail in V.ACTIVITIES)
                      and not any(f.format(a="") in e.text for f in ("Thinking about {a} next",))]
            ambiguous_by_name += bool(others)
    assert ambiguous_by_name >= 5


def test_knowledge_update_evidence_is_the_latest_statement(suite):
    seen = 0
    for ep in suite.episodes():
        pos = {ev.id: i for i, ev in enumerate(ep.events)}
        for p in (p for p in ep.probes if p.category == "knowledge-update"):
            subject, attr = parse_question(p.question)
            about = [i for i, ev in enumerate(ep.events) if states(ev, subject, attr)]
            assert len(about) >= 2, p  # an earlier value, then the update
            assert about[-1] == pos[p.evidence[0]], p
            seen += 1
    assert seen >= 10


def test_multi_hop_needs_both_events(suite):
    seen = 0
    for ep in suite.episodes():
        by_id = {ev.id: ev for ev in ep.events}
        for p in (p for p in ep.probes if p.category == "multi-hop"):
            rel_ev, fact_ev = (by_id[e] for e in p.evidence)
            subject, attr = parse_question(p.question)
            holder, word = subject.rsplit("'s ", 1)
            relative = next(n for n in re.findall(r"[A-Z]\w+ [A-Z]\w+", rel_ev.text) if n != holder)
            # hop 1 says who the relative is; hop 2 states the fact about the relative without naming the holder
            assert word in rel_ev.text and (holder in rel_ev.text or rel_ev.speaker == holder)
            assert states(fact_ev, relative, attr) and holder not in fact_ev.text
            assert relative not in p.question
            seen += 1
    assert seen >= 10


def test_abstention_asks_about_something_never_stated(suite):
    for ep in suite.episodes():
        for p in (p for p in ep.probes if p.category == "abstention"):
            if "'s " in p.question and "do for a living" in p.question and p.question.split("'s ")[0].split()[-1] in ep.meta["speakers"]:
                holder, word = re.match(r"What does (\w+)'s (.+) do for a living\?", p.question).groups()
                assert not any(ev.speaker == holder and f"my {word} " in ev.text.lower() for ev in ep.events), p
                continue
            subject, attr = parse_question(p.question)
            assert not any(states(ev, subject, attr) for ev in ep.events), p


def test_interleaved_probes_come_after_their_evidence(suite):
    mid = [(ep, p) for ep in suite.episodes() for p in ep.probes if p.position is not None]
    assert mid
    for ep, p in mid:
        pos = {ev.id: i for i, ev in enumerate(ep.events)}
        assert all(pos[e] < p.position for e in p.evidence)
        assert p.time == ep.events[p.position - 1].time
    assert not SyntheticTask(seed=3, episodes=2, events=400, interleave=0).episodes()[0].probes[0].position


def test_splits_are_disjoint_by_episode():
    t = SyntheticTask(episodes=25)
    parts = {s: {e.id for e in t.episodes(s)} for s in ("train", "val", "test")}
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    assert set().union(*parts.values()) == {e.id for e in t.episodes("all")}
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (15, 5, 5)
    assert len(SyntheticTask(episodes=2).episodes("test")) == 1


@pytest.mark.parametrize("opts, fragment", [
    ({"colour": 1}, "--task-opt colour"),
    ({"events": "many"}, "--task-opt events: expected an integer"),
    ({"events": True}, "--task-opt events: expected an integer"),
    ({"events": 0}, "--task-opt events: must be between"),
    ({"episodes": 1000, "events": 10_000}, "exceeds"),
    ({"interleave": 2}, "--task-opt interleave"),
    ({"seed": 1.5}, "--task-opt seed"),
])
def test_bad_options_are_rejected(opts, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)):
        get_task("synthetic", **opts)


def test_bad_split_and_data_file_are_rejected():
    with pytest.raises(UsageError, match="--split"):
        SyntheticTask().episodes("dev")
    with pytest.raises(UsageError, match="--data"):
        SyntheticTask(data="x.json")


def test_cli_names_the_bad_task_option():
    r = subprocess.run([sys.executable, "-m", "mstar.cli.main", "eval", "bm25", "--task", "synthetic",
                        "--task-opt", "nope=1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--task-opt nope" in r.stderr and "Traceback" not in r.stderr
