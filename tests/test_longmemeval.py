"""The LongMemEval loader on a hand-written fixture in the public longmemeval_s format."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from mstar.errors import DataError, UsageError
from mstar.harness.contract import ReadResult
from mstar.scoring.evidence import EventIndex, score_read
from mstar.tasks.longmemeval import LongMemEvalTask, parse_lme_date
from mstar.tasks.registry import get_task

FIXTURE = Path(__file__).parent / "fixtures" / "longmemeval_small.json"


@pytest.fixture(scope="module")
def episodes():
    return {e.id: e for e in LongMemEvalTask(FIXTURE).episodes()}


def test_one_episode_per_question_with_turn_ids_dates_and_roles(episodes):
    raw = json.loads(FIXTURE.read_text())
    assert list(episodes) == [q["question_id"] for q in raw]
    ep = episodes["e47becba"]
    # Sessions are named by position: the file's ids (``answer_...`` for evidence) stay on the host.
    assert [e.id for e in ep.events[:3]] == ["s0:0", "s0:1", "s1:0"]
    assert ep.probes[0].meta["sessions"]["s1"] == "answer_280352e9"
    first = ep.events[2]
    assert first.session == "s1" and first.meta == {} and first.time == "2023-05-22T10:05" and first.speaker == "user"
    assert first.text.startswith("I graduated with a degree in Business Administration")
    assert len(ep.events) == sum(len(s) for s in raw[0]["haystack_sessions"])
    (probe,) = ep.probes
    assert probe.time == "2023-05-30T23:40" and probe.category == "single-session-user"
    assert probe.answer == "Business Administration" and probe.position is None


def test_evidence_is_the_has_answer_turns_and_the_answer_sessions(episodes):
    p = episodes["gpt4_2f8be40d"].probes[0]
    names = p.meta["sessions"]
    assert [names[e.split(":")[0]] for e in p.evidence] == ["answer_w1", "answer_w2"]
    assert [names[s] for s in p.evidence_sessions] == ["answer_w1", "answer_w2"]
    assert p.answer == "2"  # a number in the file becomes a string
    p2 = episodes["8e91e7d9"].probes[0]
    (ev,) = p2.evidence  # an assistant turn can be evidence
    assert ev.endswith(":1") and p2.meta["sessions"][ev.split(":")[0]] == "answer_s1"


def test_abstention_questions_are_kept_but_left_out_of_recall(episodes):
    p = episodes["e47becba_abs"].probes[0]
    assert p.abstention and not p.scored_for_recall
    ep = episodes["e47becba_abs"]
    index = EventIndex.of(ep.events)
    ev = next(e for e in ep.events if e.id in p.evidence)
    s = score_read(p, ReadResult(context=ev.text, items=[{"text": ev.text, "sources": [ev.id]}]), index, 1024)
    assert s.evidence_recall is None and s.session_recall is None
    assert all(not q.abstention for k, e in episodes.items() if not k.endswith("_abs") for q in e.probes)


def test_an_oracle_read_scores_full_turn_and_session_recall(episodes):
    ep = episodes["0a995998"]
    p = ep.probes[0]
    items = [{"text": e.text, "sources": [e.id]} for e in ep.events if e.id in p.evidence]
    s = score_read(p, ReadResult(context="\n".join(i["text"] for i in items), items=items), EventIndex.of(ep.events), 1024)
    assert s.evidence_recall == 1.0 and s.session_recall == 1.0


def test_dates_parse_to_iso():
    assert parse_lme_date("2023/05/20 (Sat) 02:21") == "2023-05-20T02:21"
    assert parse_lme_date("2023/5/2 (Tue) 9:05") == "2023-05-02T09:05"
    for bad in ("2023-05-20 02:21", "2023/13/01 (Sun) 00:00", "yesterday"):
        with pytest.raises(ValueError):
            parse_lme_date(bad)


def test_splits_are_by_question_stable_and_configurable():
    t = LongMemEvalTask(FIXTURE)
    parts = {s: [e.id for e in t.episodes(s)] for s in ("train", "val", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(e.id for e in t.episodes())
    assert parts == {s: [e.id for e in LongMemEvalTask(FIXTURE).episodes(s)] for s in parts}
    assert [e.id for e in LongMemEvalTask(FIXTURE, split="0/0/1").episodes("test")] == [e.id for e in t.episodes()]
    assert LongMemEvalTask(FIXTURE, split="1/0/0").episodes("test") == []
    moved = {e.id for e in LongMemEvalTask(FIXTURE, split_salt="x").episodes("train")}
    assert moved != set(parts["train"]) or len(t.episodes()) < 3


@pytest.mark.parametrize("opts, fragment", [
    ({"colour": "red"}, "--task-opt colour"),
    ({"split": "60/40"}, "--task-opt split"),
    ({"split": "a/b/c"}, "--task-opt split"),
])
def test_bad_options(opts, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)):
        get_task("longmemeval", data=FIXTURE, **opts)


def _write(tmp_path: Path, data, name="bad.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _broken(mutate):
    raw = json.loads(FIXTURE.read_text())
    mutate(raw)
    return raw


def _set(path, value):
    def f(raw):
        obj = raw
        for k in path[:-1]:
            obj = obj[k]
        if value is KeyError:
            del obj[path[-1]]
        else:
            obj[path[-1]] = value
    return f


@pytest.mark.parametrize("mutate, field, message", [
    (_set([1, "question"], KeyError), "[1].question", "missing"),
    (_set([2, "answer_session_ids"], KeyError), "[2].answer_session_ids", "missing"),
    (_set([0, "question_id"], 7), "[0].question_id", "expected a string"),
    (_set([0, "answer"], ["x"]), "[0].answer", "expected a string or a number"),
    (_set([3, "haystack_sessions"], "nope"), "[3].haystack_sessions", "expected a list"),
    (_set([3, "haystack_dates"], ["2023/05/01 (Mon) 06:00"]), "[3].haystack_sessions", "differ in length"),
    (_set([0, "haystack_dates", 1], "May 22"), "[0].haystack_dates[1]", "unparseable date"),
    (_set([0, "question_date"], "soon"), "[0].question_date", "unparseable date"),
    (_set([0, "haystack_sessions", 1, 0, "content"], None), "[0].haystack_sessions[1][0].content", "expected a string"),
    (_set([0, "haystack_sessions", 1, 0, "role"], KeyError), "[0].haystack_sessions[1][0].role", "missing"),
    (_set([0, "haystack_sessions", 1, 0, "has_answer"], "yes"), "[0].haystack_sessions[1][0].has_answer", "true or false"),
    (_set([0, "haystack_sessions", 1], {"role": "user"}), "[0].haystack_sessions[1]", "expected a list of turns"),
    (_set([4], "a question"), "[4]", "expected an object"),
    (lambda raw: raw.append(copy.deepcopy(raw[0])), "[6].question_id", "duplicate question_id"),
])
def test_bad_fields_name_the_file_and_the_field(tmp_path, mutate, field, message):
    path = _write(tmp_path, _broken(mutate))
    task = LongMemEvalTask(path)
    with pytest.raises(DataError) as err:
        task.episodes("all")
    assert err.value.field == field and err.value.path == str(path) and message in str(err.value)
    with pytest.raises(DataError):  # nothing half-loaded is kept: asking again fails again
        task.episodes("train")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"question_id": "x"}), "expected a list of questions"),
])
def test_bad_files(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(DataError, match=re.escape(message)) as err:
        LongMemEvalTask(path).episodes()
    assert str(path) in str(err.value)


def test_missing_file_and_folder_default_name(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        LongMemEvalTask(tmp_path / "nope.json")
    (tmp_path / "longmemeval_s.json").write_text(FIXTURE.read_text())
    assert len(LongMemEvalTask(tmp_path).episodes()) == 6
    oracle = _write(tmp_path, FIXTURE.read_text(), "longmemeval_oracle.json")
    assert len(LongMemEvalTask(oracle).episodes()) == 6


def test_repeated_session_ids_keep_event_ids_unique(tmp_path):
    def dup(raw):
        q = raw[3]
        q["haystack_session_ids"][2] = q["haystack_session_ids"][0]
    ep = LongMemEvalTask(_write(tmp_path, _broken(dup))).episodes()[3]
    ids = [e.id for e in ep.events]
    assert len(set(ids)) == len(ids) and "s0~1:0" in ids
    assert ep.probes[0].evidence == ["s0:0", "s0~1:0"] and ep.probes[0].meta["sessions"]["s0"] == "answer_k1"
