"""LongMemEval (Wu et al., 2024): one question over a haystack of chat sessions, per episode.

File: the public ``longmemeval_s.json`` or ``longmemeval_oracle.json`` (github xiaowu0162/LongMemEval;
not shipped). It is a list of questions ``{question_id, question_type, question, answer, question_date,
haystack_session_ids, haystack_dates, haystack_sessions: [[{role, content, has_answer?}]],
answer_session_ids}``. Each question becomes one episode whose events are its haystack turns, in file
order. Sessions are re-named by position (``s0``, ``s1``, ... in order of first appearance) and turns
``<session>:<turn_index>``: the file's own session ids are gold (LongMemEval_S names evidence sessions
``answer_<hash>_N``), so they stay on the host (``Probe.meta``). A session's date ("2023/05/20 (Sat) 02:21") becomes the
ISO time of its turns. Turn-level evidence is the turns marked ``has_answer``; session-level evidence is
``answer_session_ids``. Questions whose id ends in ``_abs`` are abstention probes: kept, but left out of
recall, as the official retrieval evaluation does.

The split is by question: a stable hash of ``question_id`` into train / val / test (default 60/10/30;
``--task-opt split=70/10/20`` changes the shares, ``--task-opt split_salt=x`` reshuffles).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from mstar.episodes import Episode, Event, Probe
from mstar.errors import DataError, UsageError
from mstar.tasks.base import check_split, hash_unit, read_json, resolve_data

_STR_FIELDS = ("question_id", "question_type", "question", "question_date")
_LIST_FIELDS = ("haystack_session_ids", "haystack_dates", "haystack_sessions", "answer_session_ids")
_DATE_RE = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\s*(?:\([A-Za-z]{3}\))?\s*(\d{1,2}):(\d{2})\s*$")
OPTIONS = ("split", "split_salt")


def parse_lme_date(text: str) -> str:
    """'2023/05/20 (Sat) 02:21' -> '2023-05-20T02:21'; ValueError when it is not such a date."""
    m = _DATE_RE.match(text)
    if not m:
        raise ValueError(text)
    y, mo, d, h, mi = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi).strftime("%Y-%m-%dT%H:%M")


def parse_shares(raw: Any) -> tuple[float, float, float]:
    """'60/10/30' -> cumulative bounds (0.6, 0.7, 1.0) for train, val, test."""
    parts = str(raw).split("/")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 3 or any(n < 0 for n in nums) or sum(nums) <= 0:
        raise UsageError(f"--task-opt split: expected three non-negative shares TRAIN/VAL/TEST like 60/10/30, got {raw!r}")
    total = sum(nums)
    return nums[0] / total, (nums[0] + nums[1]) / total, 1.0


class LongMemEvalTask:
    name = "longmemeval"
    description = "LongMemEval: one question per episode over a haystack of chat sessions (s / oracle files)"
    needs_data = True
    data_hint = "longmemeval_s.json (or longmemeval_oracle.json) from github xiaowu0162/LongMemEval; MIT"

    def __init__(self, data: str | Path | None = None, **options: Any):
        for key in options:
            if key not in OPTIONS:
                raise UsageError(f"--task-opt {key}: unknown option for task 'longmemeval' (choose from {', '.join(OPTIONS)})")
        self.bounds = parse_shares(options.get("split", "60/10/30"))
        self.salt = str(options.get("split_salt", ""))
        self.path = resolve_data(data, "longmemeval_s.json", "longmemeval")
        self._all: list[Episode] | None = None

    def split_of(self, question_id: str) -> str:
        u = hash_unit(question_id, self.salt)
        return "train" if u < self.bounds[0] else ("val" if u < self.bounds[1] else "test")

    def episodes(self, split: str = "all") -> list[Episode]:
        check_split(split)
        if self._all is None:
            self._all = self._load()
        if split == "all":
            return list(self._all)
        return [e for e in self._all if self.split_of(e.id) == split]

    def _load(self) -> list[Episode]:
        raw = read_json(self.path)
        if not isinstance(raw, list):
            raise DataError(self.path, f"expected a list of questions, got {type(raw).__name__}")
        episodes = [self._episode(i, q) for i, q in enumerate(raw)]
        seen: dict[str, int] = {}
        for i, ep in enumerate(episodes):
            if ep.id in seen:
                raise DataError(self.path, f"duplicate question_id {ep.id!r} (first at [{seen[ep.id]}])",
                                f"[{i}].question_id")
            seen[ep.id] = i
        return episodes

    def _fail(self, message: str, field: str) -> DataError:
        return DataError(self.path, message, field)

    def _episode(self, i: int, q: Any) -> Episode:
        if not isinstance(q, dict):
            raise self._fail(f"expected an object, got {type(q).__name__}", f"[{i}]")
        for key in (*_STR_FIELDS, "answer", *_LIST_FIELDS):
            if key not in q:
                raise self._fail("missing", f"[{i}].{key}")
        for key in _STR_FIELDS:
            if not isinstance(q[key], str):
                raise self._fail(f"expected a string, got {type(q[key]).__name__}", f"[{i}].{key}")
        answer = q["answer"]
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise self._fail(f"expected a string or a number, got {type(answer).__name__}", f"[{i}].answer")
        for key in _LIST_FIELDS:
            if not isinstance(q[key], list):
                raise self._fail(f"expected a list, got {type(q[key]).__name__}", f"[{i}].{key}")
        sids, dates, sessions = q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"]
        if not (len(sids) == len(dates) == len(sessions)):
            raise self._fail(
                f"haystack lists differ in length: {len(sids)} session ids, {len(dates)} dates, "
                f"{len(sessions)} sessions", f"[{i}].haystack_sessions")
        qid = q["question_id"]
        try:
            qtime = parse_lme_date(q["question_date"])
        except ValueError:
            raise self._fail(f"unparseable date {q['question_date']!r} (expected like '2023/05/20 (Sat) 02:21')",
                             f"[{i}].question_date") from None

        events: list[Event] = []
        evidence: list[str] = []
        used: dict[str, int] = {}
        names: dict[str, str] = {}  # the file's session id -> its neutral name
        for s, (sid, date, turns) in enumerate(zip(sids, dates, sessions, strict=True)):
            where = f"[{i}].haystack_sessions[{s}]"
            if not isinstance(sid, str) or not sid:
                raise self._fail("expected a non-empty string", f"[{i}].haystack_session_ids[{s}]")
            if not isinstance(date, str):
                raise self._fail(f"expected a string, got {type(date).__name__}", f"[{i}].haystack_dates[{s}]")
            try:
                when = parse_lme_date(date)
            except ValueError:
                raise self._fail(f"unparseable date {date!r} (expected like '2023/05/20 (Sat) 02:21')",
                                 f"[{i}].haystack_dates[{s}]") from None
            if not isinstance(turns, list):
                raise self._fail(f"expected a list of turns, got {type(turns).__name__}", where)
            # A session id repeated inside one haystack keeps its (neutral) session name, but its turn ids
            # get a suffix so every event id stays unique.
            name = names.setdefault(sid, f"s{len(names)}")
            n = used.get(sid, 0)
            used[sid] = n + 1
            prefix = name if n == 0 else f"{name}~{n}"
            for t, turn in enumerate(turns):
                tw = f"{where}[{t}]"
                if not isinstance(turn, dict):
                    raise self._fail(f"expected an object, got {type(turn).__name__}", tw)
                for key in ("role", "content"):
                    if not isinstance(turn.get(key), str):
                        got = "missing" if key not in turn else f"expected a string, got {type(turn[key]).__name__}"
                        raise self._fail(got, f"{tw}.{key}")
                has_answer = turn.get("has_answer", False)
                if not isinstance(has_answer, bool):
                    raise self._fail(f"expected true or false, got {has_answer!r}", f"{tw}.has_answer")
                eid = f"{prefix}:{t}"
                events.append(Event(id=eid, session=name, time=when, speaker=turn["role"], text=turn["content"]))
                if has_answer:
                    evidence.append(eid)
        ans_sessions = q["answer_session_ids"]
        for k, a in enumerate(ans_sessions):
            if not isinstance(a, str):
                raise self._fail(f"expected a string, got {type(a).__name__}", f"[{i}].answer_session_ids[{k}]")
        abstention = qid.endswith("_abs")
        probe = Probe(
            id=qid,
            question=q["question"],
            time=qtime,
            answer=str(answer),
            evidence=evidence,
            category=q["question_type"],
            # An answer session absent from the haystack keeps a name no event has (it counts as missed).
            evidence_sessions=list(dict.fromkeys(names.get(a, f"missing:{a}") for a in ans_sessions)),
            abstention=abstention,
            meta={"question_type": q["question_type"], "question_id": qid,
                  "sessions": {v: k for k, v in names.items()}},
        )
        return Episode(id=qid, events=events, probes=[probe],
                       meta={"sessions": len(sids), "abstention": abstention})
