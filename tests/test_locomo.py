"""The LoCoMo loader: format, quirks (../shared/data/README.md), splits and bad input."""

import json

import pytest

from mstar.errors import DataError, UsageError
from mstar.tasks.locomo import LocomoTask, normalise_evidence, parse_locomo_time


def mini(**over):
    conv = {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ana", "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "Look at this!", "img_url": ["u"], "blip_caption": "a photo of a cat"},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Cute."},
            ],
            "session_2_date_time": "10:05 am on 3 June, 2023",
            "session_2": [{"speaker": "Ana", "dia_id": "D2:1", "text": "I moved to Porto."}],
        },
        "qa": [
            {"question": "Where?", "answer": "Porto", "evidence": ["D2:1"], "category": 4},
            {"question": "Count?", "answer": 3, "evidence": ["D1:1; D2:01"], "category": 1},
            {"question": "Adv?", "adversarial_answer": "x", "evidence": ["D1:2"], "category": 5},
            {"question": "None?", "answer": "y", "evidence": [], "category": 3},
        ],
    }
    conv.update(over)
    return [conv]


def write(tmp_path, obj, name="locomo10.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize(
    "raw, expected",
    [
        (["D8:6; D9:17"], ["D8:6", "D9:17"]),
        (["D"], []),
        (["D:11:26"], ["D11:26"]),
        (["D30:05"], ["D30:5"]),
        (["D1:3 D1:4"], ["D1:3", "D1:4"]),
        (["D1:3", "D1:3"], ["D1:3"]),
    ],
)
def test_evidence_quirks_are_normalised(raw, expected):
    assert normalise_evidence(raw) == expected


def test_time_is_iso():
    assert parse_locomo_time("1:56 pm on 8 May, 2023") == "2023-05-08T13:56"
    assert parse_locomo_time("10:05 am on 3 June, 2023") == "2023-06-03T10:05"


def test_mini_file(tmp_path):
    eps = LocomoTask(write(tmp_path, mini())).episodes("all")
    (ep,) = eps
    assert [e.id for e in ep.events] == ["D1:1", "D1:2", "D2:1"]
    assert ep.events[0].text == "Look at this! [image: a photo of a cat]" and ep.events[0].meta["image"]
    assert ep.events[2].time == "2023-06-03T10:05" and ep.events[2].session == "2"
    by_q = {p.question: p for p in ep.probes}
    assert by_q["Count?"].answer == "3" and by_q["Count?"].evidence == ["D1:1", "D2:1"]
    assert by_q["Count?"].category == "multi-hop"
    assert by_q["Adv?"].answer is None and by_q["Adv?"].meta["adversarial_answer"] == "x"
    assert not by_q["None?"].scored_for_recall
    assert by_q["Where?"].time == "2023-06-03T10:05"


def test_unresolvable_evidence_is_dropped_and_counted(tmp_path):
    obj = mini()
    obj[0]["qa"][0]["evidence"] = ["D9:9", "D2:1"]
    (ep,) = LocomoTask(write(tmp_path, obj)).episodes()
    assert ep.probes[0].evidence == ["D2:1"] and ep.meta["dropped_evidence_ids"] == 1


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        ({"a": 1}, "expected a list of conversations"),
        ([{"sample_id": "c"}], "field '[0].conversation'"),
        ([{"sample_id": "c", "conversation": {}, "qa": "nope"}], "field '[0].qa'"),
    ],
)
def test_bad_files_name_file_and_field(tmp_path, content, fragment):
    p = write(tmp_path, content)
    with pytest.raises(DataError) as e:
        LocomoTask(p).episodes()
    assert str(p) in str(e.value) and fragment in str(e.value)


def test_unknown_category_and_bad_date_name_the_field(tmp_path):
    obj = mini()
    obj[0]["qa"][1]["category"] = 9
    with pytest.raises(DataError, match=r"\[0\]\.qa\[1\]\.category.*unknown category 9"):
        LocomoTask(write(tmp_path, obj)).episodes()
    obj = mini()
    obj[0]["conversation"]["session_2_date_time"] = "yesterday"
    with pytest.raises(DataError, match="session_2_date_time"):
        LocomoTask(write(tmp_path, obj)).episodes()


def test_missing_file_unknown_split_and_env(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no such file"):
        LocomoTask(tmp_path / "nope.json")
    monkeypatch.delenv("MSTAR_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # nor in ./data/ or ../shared/data/ from here
    with pytest.raises(DataError, match="--data PATH or set MSTAR_DATA"):
        LocomoTask(None)
    write(tmp_path, mini())
    monkeypatch.setenv("MSTAR_DATA", str(tmp_path))
    task = LocomoTask(None)
    with pytest.raises(UsageError, match="--split"):
        task.episodes("dev")


def test_real_file(locomo_path):
    task = LocomoTask(locomo_path)
    eps = task.episodes("all")
    assert len(eps) == 10
    assert sum(len(e.events) for e in eps) == 5882 and sum(len(e.probes) for e in eps) == 1986
    assert sum(e.meta["dropped_evidence_ids"] for e in eps) == 2
    assert [e.id for e in task.episodes("val")] == ["conv-44"]
    assert [e.id for e in task.episodes("test")] == ["conv-47", "conv-48", "conv-49", "conv-50"]
    cats = {p.category for e in eps for p in e.probes}
    assert cats == {"multi-hop", "temporal", "open-domain", "single-hop", "adversarial"}
    no_evidence = [p for e in eps for p in e.probes if not p.evidence]
    assert len(no_evidence) == 4
    assert sum(1 for e in eps for ev in e.events if "[image:" in ev.text) >= 910
