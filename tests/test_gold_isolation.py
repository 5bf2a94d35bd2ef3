"""Gold never reaches a harness: every registered task suite, through the real evaluation path.

A recording harness keeps every dict handed to ``write`` and ``read`` and returns them from ``dump()``;
the test then checks them against the host's episodes. The suites come from the registry, so a suite
added later is covered (or this test fails asking for its fixture).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mstar.episodes import Episode
from mstar.evaluate import EvalConfig, evaluate_episode
from mstar.harness.loader import from_source
from mstar.sandbox.inline import InlineBackend
from mstar.tasks.registry import TASKS, describe_tasks, get_task
from mstar.toolkit import Toolkit
from mstar.visible import EVENT_FIELDS, QUERY_FIELDS

FIXTURES = Path(__file__).parent / "fixtures"

RECORDER = '''
INSTRUCTIONS = "x"
KNOBS = {}
class Memory:
    def __init__(self, toolkit, knobs):
        self.seen = []
    def write(self, event):
        self.seen.append({"kind": "write", "data": event})
    def read(self, query):
        self.seen.append({"kind": "read", "data": query})
        return {"context": "", "items": []}
    def dump(self):
        return self.seen
'''

GOLD_WORDS = re.compile(r"answer|abs|evidence|gold|has_?answer|categor|adversar", re.I)


def _data_for(name: str, locomo_path: Path) -> Path | None:
    return {"locomo": locomo_path, "longmemeval": FIXTURES / "longmemeval_small.json"}.get(name)


def _suite_episodes(name: str, request) -> list[Episode]:
    needs_data = {t["name"]: t["needs_data"] for t in describe_tasks()}[name]
    if not needs_data:
        return get_task(name, episodes=4, events=120, probes=12).episodes("all") if name == "synthetic" \
            else get_task(name).episodes("all")
    data = _data_for(name, request.getfixturevalue("locomo_path") if name == "locomo" else Path())
    assert data is not None, f"task suite {name!r} needs data: add a small fixture for it to this test"
    eps = get_task(name, data=data).episodes("all")
    return eps[:3]


def _shape(s: str) -> str:
    return re.sub(r"\d+", "#", s)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_nothing_gold_reaches_the_harness(name, request):
    episodes = _suite_episodes(name, request)
    assert episodes
    program = from_source(RECORDER)
    for ep in episodes:
        res = evaluate_episode(program, ep, InlineBackend(), Toolkit(), config=EvalConfig(budget=256))
        assert res.failure is None, res.failure
        writes = [r["data"] for r in res.dump if r["kind"] == "write"]
        reads = [r["data"] for r in res.dump if r["kind"] == "read"]
        host = {e.id: e for e in ep.events}
        assert [w["id"] for w in writes] == [e.id for e in ep.events]

        # Events: exactly the allow-listed fields, copied unchanged; meta only with declared keys.
        for w in writes:
            assert set(w) == {*EVENT_FIELDS, "meta"}, w
            e = host[w["id"]]
            assert (w["session"], w["time"], w["speaker"], w["text"]) == (e.session, e.time, e.speaker, e.text)
            assert set(w["meta"]) <= set(ep.visible_meta)

        # Ids and sessions carry no gold word, and evidence looks like everything else.
        evidence = {x for p in ep.probes for x in p.evidence}
        ev_sessions = {s for p in ep.probes for s in p.evidence_sessions} | {host[x].session for x in evidence if x in host}
        for w in writes:
            assert not GOLD_WORDS.search(w["id"]) and not GOLD_WORDS.search(w["session"]), w
        others = {_shape(w["id"]) for w in writes if w["id"] not in evidence}
        assert {_shape(x) for x in evidence if x in host} <= others
        other_sessions = {_shape(w["session"]) for w in writes if w["session"] not in ev_sessions}
        if other_sessions:
            assert {_shape(s) for s in ev_sessions if s in {w["session"] for w in writes}} <= other_sessions

        # Queries: exactly the allow-listed fields; a neutral alias for the id, the host's question unchanged.
        assert len(reads) == len(ep.probes)
        by_question = {p.question: p for p in ep.probes}
        for q in reads:
            assert set(q) == set(QUERY_FIELDS), q
            assert re.fullmatch(r"q\d+", q["id"]), q
            assert q["question"] in by_question and q["budget"] == 256
        aliases = [q["id"] for q in reads]
        assert len(set(aliases)) == len(aliases)
        host_ids = {p.id for p in ep.probes}
        assert not host_ids & set(aliases) or all(re.fullmatch(r"q\d+", h) for h in host_ids)

        # No answer string was injected anywhere the harness can see (beyond what the conversation says).
        seen = json.dumps([writes, reads])
        conversation = json.dumps([e.text for e in ep.events] + [p.question for p in ep.probes])
        for p in ep.probes:
            ans = str(p.answer or "")
            if len(ans) >= 6 and ans not in conversation:
                assert ans not in seen, (name, p.id, ans)


def test_reads_at_one_point_follow_the_alias_order_not_the_file_order(request):
    from mstar.visible import EpisodeView

    ep = _suite_episodes("synthetic", request)[0]
    view = EpisodeView(ep)
    due = [p for p in ep.probes if p.position is None]
    ordered = view.read_order(due)
    assert [view.alias[p.id] for p in ordered] == sorted((view.alias[p.id] for p in due), key=lambda a: int(a[1:]))
    assert [p.id for p in ordered] != [p.id for p in due]  # the file order (grouped by kind) is not kept


def test_undeclared_meta_stays_on_the_host():
    from mstar.episodes import Event, Probe

    ev = Event(id="1", session="a", text="hello there", meta={"has_answer": True, "image": True})
    ep = Episode(id="e", events=[ev], probes=[Probe(id="x_abs", question="?", evidence=["1"], abstention=True)])
    res = evaluate_episode(from_source(RECORDER), ep, InlineBackend(), Toolkit())
    write, read = (r["data"] for r in res.dump)
    assert write["meta"] == {} and read["id"] == "q0"
    ep2 = ep.model_copy(update={"visible_meta": ("image",)})
    res2 = evaluate_episode(from_source(RECORDER), ep2, InlineBackend(), Toolkit())
    assert res2.dump[0]["data"]["meta"] == {"image": True}
