"""Task data files may be gzipped: every suite that reads a file reads ``.json.gz`` as it reads ``.json``,
and a broken one is refused in one line naming the file."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from mstar.errors import DataError
from mstar.tasks.base import find_data, read_json
from mstar.tasks.locomo import LocomoTask
from mstar.tasks.longmemeval import LongMemEvalTask

LME_FIXTURE = Path(__file__).parent / "fixtures" / "longmemeval_small.json"


def _locomo_mini() -> list:
    turns = [{"speaker": "Ana", "dia_id": f"D1:{i}", "text": f"turn {i} about Porto"} for i in range(1, 6)]
    return [{"sample_id": "conv-x",
             "conversation": {"speaker_a": "Ana", "speaker_b": "Ben",
                              "session_1_date_time": "1:56 pm on 8 May, 2023", "session_1": turns},
             "qa": [{"question": "Where?", "answer": "Porto", "evidence": ["D1:3"], "category": 4}]}]


def _gzip(src: Path, dst: Path) -> Path:
    with src.open("rb") as f, gzip.open(dst, "wb") as g:
        shutil.copyfileobj(f, g)
    return dst


def _dump(episodes) -> list:
    return [e.model_dump() for e in episodes]


def test_gzipped_longmemeval_reads_exactly_as_the_plain_file(tmp_path):
    packed = _gzip(LME_FIXTURE, tmp_path / "longmemeval_small.json.gz")
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert _dump(LongMemEvalTask(packed).episodes()) == _dump(LongMemEvalTask(LME_FIXTURE).episodes())
    for split in ("train", "val", "test"):
        assert [e.id for e in LongMemEvalTask(packed).episodes(split)] == \
               [e.id for e in LongMemEvalTask(LME_FIXTURE).episodes(split)]


def test_gzipped_locomo_reads_exactly_as_the_plain_file(tmp_path):
    plain = tmp_path / "locomo10.json"
    plain.write_text(json.dumps(_locomo_mini()))
    packed = _gzip(plain, tmp_path / "other.json.gz")
    eps = LocomoTask(packed).episodes()
    assert _dump(eps) == _dump(LocomoTask(plain).episodes())
    assert eps[0].probes[0].evidence == ["D1:3"] and len(eps[0].events) == 5


def test_a_data_folder_holding_only_the_gzipped_file_is_found(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    _gzip(LME_FIXTURE, tmp_path / "d" / "longmemeval_s.json.gz")
    path, how = find_data(tmp_path / "d", "longmemeval_s.json")
    assert path == tmp_path / "d" / "longmemeval_s.json.gz" and how == "--data"
    assert len(LongMemEvalTask(tmp_path / "d").episodes()) == 6
    # The default folders (./data/ here) are searched for the gzipped name as well.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MSTAR_DATA", raising=False)
    (tmp_path / "data").mkdir()
    plain = tmp_path / "data" / "locomo10.json"
    plain.write_text(json.dumps(_locomo_mini()))
    _gzip(plain, tmp_path / "data" / "locomo10.json.gz")
    plain.unlink()
    path, how = find_data(None, "locomo10.json")
    assert path == Path("data") / "locomo10.json.gz" and how == "./data/"
    assert LocomoTask().episodes()[0].id == "conv-x"
    # Both present: the plain file wins (the gzipped one may be a stale copy; plain is what --data meant).
    plain.write_text(json.dumps(_locomo_mini()))
    assert find_data(None, "locomo10.json")[0] == Path("data") / "locomo10.json"


def _one_line(err: pytest.ExceptionInfo, path: Path, fragment: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and fragment in msg, msg


def test_a_truncated_gzip_is_refused_in_one_line_naming_the_file(tmp_path):
    packed = _gzip(LME_FIXTURE, tmp_path / "lme.json.gz")
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        LongMemEvalTask(cut).episodes()
    _one_line(err, cut, "corrupt gzip file")


def test_a_gzip_with_a_damaged_body_is_refused(tmp_path):
    raw = bytearray(gzip.compress(LME_FIXTURE.read_bytes()))
    for i in range(20, 60):  # inside the deflate stream: header intact, data garbage
        raw[i] ^= 0xFF
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        read_json(bad)
    _one_line(err, bad, "corrupt gzip file")


def test_a_gz_name_without_gzip_content_is_refused(tmp_path):
    fake = tmp_path / "locomo10.json.gz"
    fake.write_text(json.dumps(_locomo_mini()))
    with pytest.raises(DataError) as err:
        LocomoTask(fake).episodes()
    _one_line(err, fake, "not a gzip file")


def test_gzipped_bad_json_is_refused_as_json(tmp_path):
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(b'[{"question_id": "x",'))
    with pytest.raises(DataError) as err:
        LongMemEvalTask(bad).episodes()
    _one_line(err, bad, "not valid JSON")
    wrong = tmp_path / "wrong.json.gz"
    wrong.write_bytes(gzip.compress(b'{"question_id": "x"}'))
    with pytest.raises(DataError) as err:
        LongMemEvalTask(wrong).episodes()
    _one_line(err, wrong, "expected a list of questions")


def test_the_shared_longmemeval_dev_half_reads_gzipped(lme_dev_path):
    task = LongMemEvalTask(lme_dev_path)
    eps = task.episodes()
    assert len(eps) == 251  # ../shared/data/README.md: 251 questions in this half
    assert sum(len(task.episodes(s)) for s in ("train", "val", "test")) == 251
    assert all(e.probes and e.events for e in eps)
